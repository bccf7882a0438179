"""Tree ensembles read from ONNX-ML TreeEnsemble operators, and exact path-dependent TreeSHAP on them.

Path-dependent TreeSHAP (Lundberg et al. 2020) values a coalition S of
features by the tree's expected output when the features in S follow the
row and the others follow the training distribution as the tree's node covers
record it. For one leaf with value v, the features split on along its path
form a game ``v * prod_{i in S} o_i * prod_{i not in S} z_i``, where ``o_i``
is 1 when the row satisfies every split on feature i along the path and
``z_i`` the product of the cover fractions of those splits. Shapley values of
such a product game have a closed form (a weighted sum over the coefficients
of ``prod_{j != i} (z_j + o_j t)``), and since ``o`` is binary, each path has
only 2^d distinct answers for d features on it. They are tabulated once per
path; every row then costs one table look-up per path and feature, in numpy,
with no Python loop over rows. Paths with more features than a table pays
for are computed row by row in the same vectorised form.

ONNX stores no node covers (``nodes_hitrates`` is 1.0 in what skl2onnx and
onnxmltools write), so covers are counted on reference rows (the audited data
set), as ``shap.TreeExplainer`` does when it is given data; nodes no reference
row reaches get a weight of 1e-6, the same convention as shap's.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

_TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5, "LEAF": 6}
_TRANSFORMS = ("NONE", "LOGISTIC", "SOFTMAX")
# Values gathered per block of rows: bounds the memory of one block to tens of MB.
_BLOCK_VALUES = 1 << 22
_ZERO_COVER = 1e-6
# Float32 values in all path tables together (128 MiB); paths past it are computed row by row.
_TABLE_BUDGET = 1 << 25


class UnsupportedTrees(Exception):
    """The graph's trees cannot be read or explained exactly (with the reason)."""


@dataclass
class TreeEnsemble:
    """Every node of every tree, in flat arrays indexed by a global node number."""

    op: str
    n_trees: int
    n_features: int
    feature: np.ndarray  # (nodes,) split feature, -1 at leaves
    threshold: np.ndarray  # (nodes,) float64
    mode: np.ndarray  # (nodes,) code from _MODES
    true_child: np.ndarray  # (nodes,) global index, -1 at leaves
    false_child: np.ndarray
    missing_true: np.ndarray  # (nodes,) bool: NaN goes to the true child
    leaf_value: np.ndarray  # (nodes, K) summed leaf weights per score column
    base: np.ndarray  # (K,)
    post_transform: str
    n_classes: int  # class labels of a classifier; score columns of a regressor
    single_score: bool  # a binary classifier with one score column (the positive class)

    @property
    def n_outputs(self) -> int:
        return self.leaf_value.shape[1]

    def describe(self) -> str:
        kind = "classifier" if self.op == "TreeEnsembleClassifier" else "regressor"
        return f"{self.op} ({self.n_trees} trees, {int((self.feature < 0).sum())} leaves, {kind})"

    def explained_space(self) -> str:
        """In words: what the attributions add up to."""
        if self.post_transform == "LOGISTIC":
            return "the log-odds margin of the positive class (the score before the graph's LOGISTIC post-transform)"
        if self.post_transform == "SOFTMAX":
            return "each class's raw margin (the scores before the graph's SOFTMAX post-transform)"
        if self.op == "TreeEnsembleClassifier":
            return "the class probabilities the trees add up (the graph applies no post-transform)"
        return "the regression output (no post-transform)"

    # -- evaluation ---------------------------------------------------------------
    def _decisions(self, x: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """(N, len(nodes)) bool: does each row take the true branch at each of these internal nodes."""
        values = x[:, self.feature[nodes]]
        threshold = self.threshold[nodes].astype(x.dtype)
        mode = self.mode[nodes]
        result = np.where(mode == 0, values <= threshold, values < threshold)
        for code, op in ((2, np.greater_equal), (3, np.greater), (4, np.equal), (5, np.not_equal)):
            if (mode == code).any():
                result = np.where(mode == code, op(values, threshold), result)
        missing = self.missing_true[nodes]
        if missing.any():
            result |= np.isnan(values) & missing
        return result

    def reach(self, x: np.ndarray) -> np.ndarray:
        """(N, nodes) bool: which nodes each row passes through."""
        x = self._check(x)
        reached = np.zeros((len(x), len(self.feature)), dtype=bool)
        reached[:, self.roots] = True
        for level in self.levels:
            parents = self.parent[level]
            go_true = self._decisions(x, parents)
            reached[:, level] = reached[:, parents] & (go_true == self.is_true_child[level])
        return reached

    def margins(self, x: np.ndarray) -> np.ndarray:
        """(N, K) raw scores before the post-transform: base values plus the leaves each row reaches."""
        leaves = self.leaves
        out = np.empty((len(x), self.n_outputs))
        step = max(1, _BLOCK_VALUES // max(len(self.feature), 1))
        for i in range(0, len(x), step):
            reached = self.reach(x[i : i + step])[:, leaves]
            out[i : i + step] = reached.astype(np.float64) @ self.leaf_value[leaves] + self.base
        return out

    def outputs(self, margins: np.ndarray) -> np.ndarray:
        """What the graph's probability (or value) output holds for these margins: the post-transform applied."""
        if self.post_transform == "LOGISTIC":
            scores = 1.0 / (1.0 + np.exp(-margins))
        elif self.post_transform == "SOFTMAX":
            shifted = np.exp(margins - margins.max(axis=1, keepdims=True))
            scores = shifted / shifted.sum(axis=1, keepdims=True)
        else:
            scores = margins
        if self.single_score:
            return np.concatenate([1.0 - scores, scores], axis=1)
        return scores

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float32)
        x = x.reshape(len(x), -1)
        if x.shape[1] < self.n_features:
            raise ValueError(f"the trees split on feature {self.n_features - 1}, but rows have {x.shape[1]} values")
        return x

    # -- structure ------------------------------------------------------------------
    def _structure(self) -> None:
        nodes = len(self.feature)
        internal = self.feature >= 0
        self.parent = np.full(nodes, -1, dtype=np.int64)
        self.is_true_child = np.zeros(nodes, dtype=bool)
        index = np.flatnonzero(internal)
        self.parent[self.true_child[index]] = index
        self.parent[self.false_child[index]] = index
        self.is_true_child[self.true_child[index]] = True
        self.roots = np.flatnonzero(self.parent < 0)
        depth = np.zeros(nodes, dtype=np.int64)
        frontier = self.roots
        levels = []
        seen = 0
        while True:
            children = np.concatenate([self.true_child[frontier[internal[frontier]]], self.false_child[frontier[internal[frontier]]]])
            if len(children) == 0:
                break
            seen += len(children)
            if seen > nodes:
                raise UnsupportedTrees("the tree attributes form a cycle")
            depth[children] = len(levels) + 1
            levels.append(np.sort(children))
            frontier = children
        self.levels = levels
        self.depth = depth
        self.leaves = np.flatnonzero(~internal)


def find_tree_node(proto):
    """The graph's TreeEnsemble node, or None when it has none; UnsupportedTrees when it cannot be read."""
    nodes = [n for n in proto.graph.node if n.domain == "ai.onnx.ml" and n.op_type in (*_TREE_OPS, "TreeEnsemble")]
    if not nodes:
        return None
    if len(nodes) > 1:
        raise UnsupportedTrees(f"the graph has {len(nodes)} tree-ensemble operators; TreeSHAP reads graphs with one")
    node = nodes[0]
    if node.op_type == "TreeEnsemble":
        raise UnsupportedTrees("the ai.onnx.ml TreeEnsemble operator (opset 5) is not read yet; export with an earlier ai.onnx.ml opset")
    # The trees must see the model's input columns as they are, or features would
    # not be the data's columns: only casts and identities may stand between.
    producers = {out: n for n in proto.graph.node for out in n.output}
    inputs = {i.name for i in proto.graph.input} - {i.name for i in proto.graph.initializer}
    name = node.input[0]
    while name not in inputs:
        producer = producers.get(name)
        if producer is None or producer.op_type not in ("Cast", "Identity"):
            what = producer.op_type if producer is not None else "a value that is not a graph input"
            raise UnsupportedTrees(f"the trees read the output of {what}, not the model's input columns, so their features are not the data's")
        name = producer.input[0]
    return node


def _node_attributes(node) -> dict:
    """A node's attributes by name, tensors as numpy arrays."""
    import onnx
    import onnx.numpy_helper

    attrs = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, onnx.TensorProto):
            value = onnx.numpy_helper.to_array(value)
        attrs[a.name] = value
    return attrs


def _float_attribute(attrs: dict, name: str, default=None):
    # Newer opsets may store the attribute as a double tensor `<name>_as_tensor` instead.
    if f"{name}_as_tensor" in attrs:
        return np.asarray(attrs[f"{name}_as_tensor"], dtype=np.float64)
    return attrs.get(name, default)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _NodePositions:
    """Where each (tree id, node id) pair sits in the node arrays."""

    def __init__(self, tree_ids: np.ndarray, node_ids: np.ndarray):
        self.width = int(node_ids.max()) + 1
        keys = tree_ids * self.width + node_ids
        self.order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[self.order]
        if len(np.unique(self.sorted_keys)) != len(keys):
            raise UnsupportedTrees("a (tree, node) pair appears twice")

    def of(self, trees, ids) -> np.ndarray:
        wanted = np.asarray(trees, dtype=np.int64) * self.width + np.asarray(ids, dtype=np.int64)
        position = np.searchsorted(self.sorted_keys, wanted)
        position = np.minimum(position, len(self.sorted_keys) - 1)
        if not (self.sorted_keys[position] == wanted).all():
            raise UnsupportedTrees("a child or leaf weight names a node that does not exist")
        return self.order[position]


@dataclass
class _NodeArrays:
    tree_ids: np.ndarray
    modes: np.ndarray
    feature: np.ndarray
    true_child: np.ndarray
    false_child: np.ndarray
    missing_true: np.ndarray
    threshold: np.ndarray
    positions: _NodePositions


def _read_nodes(attrs: dict) -> _NodeArrays:
    """The per-node arrays, children as positions in them rather than node ids."""
    tree_ids = np.asarray(attrs["nodes_treeids"], dtype=np.int64)
    node_ids = np.asarray(attrs["nodes_nodeids"], dtype=np.int64)
    modes_raw = attrs["nodes_modes"]
    modes = np.array([_MODES.get(m.decode() if isinstance(m, bytes) else m, -1) for m in modes_raw], dtype=np.int64)
    if (modes < 0).any():
        raise UnsupportedTrees("a node mode outside BRANCH_* and LEAF")
    positions = _NodePositions(tree_ids, node_ids)
    n_nodes = len(tree_ids)
    leaf = modes == 6
    feature = np.where(leaf, -1, np.asarray(attrs["nodes_featureids"], dtype=np.int64))
    true_child = np.full(n_nodes, -1, dtype=np.int64)
    false_child = np.full(n_nodes, -1, dtype=np.int64)
    branch = np.flatnonzero(~leaf)
    true_child[branch] = positions.of(tree_ids[branch], np.asarray(attrs["nodes_truenodeids"], dtype=np.int64)[branch])
    false_child[branch] = positions.of(tree_ids[branch], np.asarray(attrs["nodes_falsenodeids"], dtype=np.int64)[branch])
    missing = np.asarray(attrs.get("nodes_missing_value_tracks_true") or np.zeros(n_nodes), dtype=bool)
    threshold = np.asarray(_float_attribute(attrs, "nodes_values"), dtype=np.float64)
    return _NodeArrays(tree_ids, modes, feature, true_child, false_child, missing, threshold, positions)


def _output_count(attrs: dict, classifier: bool) -> tuple[int, str | None]:
    """The number of classes or targets, and a regressor's aggregate over trees (None for a classifier)."""
    if classifier:
        labels = attrs.get("classlabels_int64s") or attrs.get("classlabels_strings") or []
        return len(labels), None
    n_classes = int(attrs.get("n_targets", 1))
    aggregate = _text(attrs.get("aggregate_function", b"SUM"))
    if aggregate not in ("SUM", "AVERAGE"):
        raise UnsupportedTrees(f"aggregate_function {aggregate}: a {aggregate.lower()} over trees has no additive attribution")
    return n_classes, aggregate


def _leaf_values(attrs: dict, nodes: _NodeArrays, classifier: bool, n_classes: int) -> tuple[np.ndarray, bool]:
    """Each node's output values (zero off the leaves), and whether a binary classifier scores one column only."""
    prefix = "class" if classifier else "target"
    weight_ids = np.asarray(attrs[f"{prefix}_ids"], dtype=np.int64)
    weights = np.asarray(_float_attribute(attrs, f"{prefix}_weights"), dtype=np.float64)
    weight_nodes = nodes.positions.of(attrs[f"{prefix}_treeids"], attrs[f"{prefix}_nodeids"])
    # onnxruntime's binary case: two labels but weights for one score column,
    # which holds the positive class's score.
    single_score = classifier and n_classes == 2 and len(np.unique(weight_ids)) == 1
    n_outputs = 1 if single_score else n_classes
    if single_score:
        weight_ids = np.zeros_like(weight_ids)
    if weight_ids.max(initial=0) >= n_outputs:
        raise UnsupportedTrees("a leaf weight for a class or target the node does not declare")
    leaf_value = np.zeros((len(nodes.tree_ids), n_outputs))
    np.add.at(leaf_value, (weight_nodes, weight_ids), weights)
    return leaf_value, single_score


def _base_values(attrs: dict, n_outputs: int, single_score: bool) -> np.ndarray:
    base = _float_attribute(attrs, "base_values")
    base = np.zeros(n_outputs) if base is None or len(base) == 0 else np.asarray(base, dtype=np.float64)
    if len(base) != n_outputs:
        if single_score and len(base) == 2:
            base = base[1:]
        else:
            raise UnsupportedTrees(f"{len(base)} base values for {n_outputs} scores")
    return base


def read_trees(node) -> TreeEnsemble:
    """Flat arrays of a TreeEnsembleClassifier / TreeEnsembleRegressor node's attributes."""
    attrs = _node_attributes(node)
    classifier = node.op_type == "TreeEnsembleClassifier"
    post = _text(attrs.get("post_transform", b"NONE"))
    if post not in _TRANSFORMS:
        raise UnsupportedTrees(f"post_transform {post} (TreeSHAP handles NONE, LOGISTIC and SOFTMAX)")
    nodes = _read_nodes(attrs)
    n_classes, aggregate = _output_count(attrs, classifier)
    leaf_value, single_score = _leaf_values(attrs, nodes, classifier, n_classes)
    n_trees = len(np.unique(nodes.tree_ids))
    if aggregate == "AVERAGE":
        leaf_value /= n_trees
    base = _base_values(attrs, leaf_value.shape[1], single_score)
    ensemble = TreeEnsemble(
        op=node.op_type, n_trees=n_trees, n_features=int(nodes.feature.max(initial=-1)) + 1, feature=nodes.feature,
        threshold=nodes.threshold, mode=nodes.modes, true_child=nodes.true_child, false_child=nodes.false_child,
        missing_true=nodes.missing_true, leaf_value=leaf_value, base=base, post_transform=post, n_classes=n_classes,
        single_score=bool(single_score),
    )
    ensemble._structure()
    return ensemble


# -- path-dependent TreeSHAP -----------------------------------------------------------
def _shapley_weights(d: int) -> np.ndarray:
    """w(s) = s! (d - 1 - s)! / d!, s = 0 .. d - 1: the weight of a coalition of s other players."""
    from math import factorial

    return np.array([factorial(s) * factorial(d - 1 - s) / factorial(d) for s in range(d)])


def _path_games(z: np.ndarray, o: np.ndarray, d_of: np.ndarray | None = None) -> np.ndarray:
    """Shapley values of the product games v(S) = prod_{S} o_j prod_{not S} z_j, in O(d^2) per game.

    z: (P, d) zero fractions in [0, 1], o: (P, B, d) one fractions (0 or 1); returns
    (P, B, d), player k's value: (o_k - z_k) * W(prod_{j != k} (z_j + o_j t)), where
    W(q) = sum_s w(s) [t^s] q. The full product is built once; a player with o_k = 0
    contributes a constant factor z_k, so its value is -W(full product); one with
    o_k = 1 contributes (t + z_k), divided out from the top down (stable for z_k <= 1).
    With ``d_of`` (P,), path p has d_of[p] players and the rest are neutral (z = 1, o = 0).
    """
    n_paths, n_patterns, d = o.shape
    if d_of is None:
        weights = np.broadcast_to(_shapley_weights(d), (n_paths, 1, d))
    else:
        weights = np.zeros((n_paths, 1, d))
        for players in np.unique(d_of):
            weights[d_of == players, 0, :players] = _shapley_weights(int(players))
    z = np.broadcast_to(z[:, None, :], o.shape)
    full = np.zeros((n_paths, n_patterns, d + 1))
    full[..., 0] = 1.0
    for j in range(d):
        # multiply by (z_j + o_j t); the right-hand side is read before it is written
        full[..., 1 : j + 2] = full[..., 1 : j + 2] * z[..., j : j + 1] + full[..., : j + 1] * o[..., j : j + 1]
        full[..., 0] *= z[..., j]
    weighted_full = (full[..., :d] * weights).sum(axis=-1)
    out = np.empty(o.shape)
    quotient = np.empty((n_paths, n_patterns))
    for k in range(d):
        # Q = full / (t + z_k): q_{d-1} = p_d, q_{i-1} = p_i - z_k q_i; W(Q) accumulated on the way.
        quotient[:] = full[..., d]
        weighted = quotient * weights[..., d - 1]
        for i in range(d - 1, 0, -1):
            quotient = full[..., i] - z[..., k] * quotient
            weighted += quotient * weights[..., i - 1]
        out[..., k] = np.where(o[..., k] > 0, (1.0 - z[..., k]) * weighted, -weighted_full)
    return out


@dataclass
class _PathGroup:
    """Paths with the same length (E nodes) and number d of distinct features: their tables and where their values go."""

    length: int
    d: int
    paths: np.ndarray  # (P,) leaf node per path
    elem_node: np.ndarray  # (P, E) internal nodes on the path
    elem_true: np.ndarray  # (P, E) the path takes the true branch there
    elem_slot: np.ndarray  # (P, E) which of the d features the node splits on
    slot_feature: np.ndarray  # (P, d)
    z: np.ndarray  # (P, d)
    table: np.ndarray | None  # (P, d, 2^E) Shapley values per pattern of satisfied nodes, or None: row by row
    d_of: np.ndarray | None = None  # row by row: each path's own number of features (the group is padded to d)


class TreeShap:
    """Exact path-dependent TreeSHAP of a TreeEnsemble, in its margin space, with covers counted on reference rows."""

    def __init__(self, trees: TreeEnsemble, reference: np.ndarray, table_limit: int = 1024):
        self.trees = trees
        reference = trees._check(reference)
        if len(reference) == 0:
            raise ValueError("TreeSHAP needs reference rows to count node covers")
        self.n_reference = len(reference)
        cover = np.zeros(len(trees.feature))
        step = max(1, _BLOCK_VALUES // max(len(trees.feature), 1))
        for i in range(0, len(reference), step):
            cover += trees.reach(reference[i : i + step]).sum(axis=0)
        cover[cover == 0] = _ZERO_COVER
        self.cover = cover
        self.table_limit = table_limit
        self._build_paths()

    def _build_paths(self) -> None:
        trees = self.trees
        leaves = trees.leaves
        max_depth = int(trees.depth[leaves].max(initial=0))
        # Walk up from every leaf at once: element e is the e-th ancestor.
        elem_node = np.full((len(leaves), max(max_depth, 1)), -1, dtype=np.int64)
        elem_true = np.zeros_like(elem_node, dtype=bool)
        ratio = np.ones(elem_node.shape)
        child = leaves.copy()
        for e in range(max_depth):
            parent = np.where(child >= 0, trees.parent[np.maximum(child, 0)], -1)
            has = parent >= 0
            elem_node[has, e] = parent[has]
            elem_true[has, e] = trees.is_true_child[child[has]]
            ratio[has, e] = self.cover[child[has]] / self.cover[parent[has]]
            child = np.where(has, parent, -1)
        feat = np.where(elem_node >= 0, trees.feature[np.maximum(elem_node, 0)], -1)
        valid = elem_node >= 0
        same = (feat[:, :, None] == feat[:, None, :]) & valid[:, :, None] & valid[:, None, :]
        first = same.argmax(axis=2)
        is_first = (first == np.arange(feat.shape[1])) & valid
        slot_of_first = np.cumsum(is_first, axis=1) - 1
        slot = np.where(valid, np.take_along_axis(slot_of_first, first, axis=1), 0)
        d_of_path = is_first.sum(axis=1)
        length_of_path = valid.sum(axis=1)
        if length_of_path.max(initial=0) > 62:
            raise UnsupportedTrees("a tree deeper than 62 levels")
        self.expected = trees.base.copy()
        by_length: dict[int, list[_PathGroup]] = {}
        for length, d in sorted(set(zip(length_of_path.tolist(), d_of_path.tolist()))):
            members = np.flatnonzero((length_of_path == length) & (d_of_path == d))
            value = trees.leaf_value[leaves[members]]
            if d == 0:  # a tree that is a single leaf: its value is in every expectation, no attribution
                self.expected += value.sum(axis=0)
                continue
            m_slot = slot[members][:, :length]
            z = np.ones((len(members), d))
            rows = np.repeat(np.arange(len(members)), length)
            np.multiply.at(z, (rows, m_slot.ravel()), ratio[members][:, :length].ravel())
            slot_feature = np.zeros((len(members), d), dtype=np.int64)
            firsts = is_first[members][:, :length]
            slot_feature[np.nonzero(firsts)[0], m_slot[firsts]] = feat[members][:, :length][firsts]
            self.expected += (value * z.prod(axis=1, keepdims=True)).sum(axis=0)
            by_length.setdefault(length, []).append(_PathGroup(int(length), int(d), leaves[members], elem_node[members][:, :length],
                                                               elem_true[members][:, :length], m_slot, slot_feature, z, None))
        self._by_length = by_length
        self._groups_by_limit: dict[int, list[_PathGroup]] = {}

    def groups_for(self, n_rows: int) -> list[_PathGroup]:
        """The path groups for explaining ``n_rows`` rows: a table pays for itself when it has
        fewer patterns than there are rows, and fits the budget; other paths go row by row."""
        limit = min(self.table_limit, max(n_rows, 1))
        limit = 1 << (limit.bit_length() - 1)  # a power of two, so few distinct limits are cached
        if limit in self._groups_by_limit:
            return self._groups_by_limit[limit]
        table_values = 0
        tabled: dict[int, list[_PathGroup]] = {}
        row_parts = []
        for length, parts in sorted(self._by_length.items()):
            for p in parts:
                if 2**length <= limit and table_values + len(p.paths) * p.d * 2**length <= _TABLE_BUDGET:
                    table = self._table(p.z, p.elem_slot, length, p.d)
                    table_values += table.size
                    tabled.setdefault(length, []).append(dataclasses.replace(p, table=table))
                else:
                    row_parts.append(p)
        # Paths of one length share one set of tensor operations: their tables are
        # padded to the group's most features with slots that hold zeros and go nowhere.
        groups: list[_PathGroup] = []
        for length, parts in tabled.items():
            parts = [p for p in parts if p.table is not None]
            if len(parts) == 1:
                groups.extend(parts)
                continue
            d = max(p.d for p in parts)
            table = np.zeros((sum(len(p.paths) for p in parts), d, 2**length), dtype=np.float32)
            slot_feature = np.full((len(table), d), -1, dtype=np.int64)
            z = np.ones((len(table), d))
            at = 0
            for p in parts:
                table[at : at + len(p.paths), : p.d] = p.table
                slot_feature[at : at + len(p.paths), : p.d] = p.slot_feature
                z[at : at + len(p.paths), : p.d] = p.z
                at += len(p.paths)
            groups.append(_PathGroup(length, d, np.concatenate([p.paths for p in parts]), np.concatenate([p.elem_node for p in parts]),
                                     np.concatenate([p.elem_true for p in parts]), np.concatenate([p.elem_slot for p in parts]),
                                     slot_feature, z, table))
        if row_parts:
            groups.append(self._padded(row_parts))
        self._groups_by_limit = {limit: groups}  # one set kept: tables can be large
        return groups

    @staticmethod
    def _padded(parts: list[_PathGroup]) -> _PathGroup:
        """Paths computed row by row, all in one group: nodes past a path's end always match and feed a
        slot that is dropped, and slots past its features are neutral factors (z = 1, o = 0)."""
        length = max(p.length for p in parts)
        d = max(p.d for p in parts)
        n_paths = sum(len(p.paths) for p in parts)
        elem_node = np.full((n_paths, length), -1, dtype=np.int64)
        elem_true = np.ones((n_paths, length), dtype=bool)
        elem_slot = np.full((n_paths, length), d, dtype=np.int64)
        slot_feature = np.full((n_paths, d), -1, dtype=np.int64)
        z = np.ones((n_paths, d))
        d_of = np.zeros(n_paths, dtype=np.int64)
        at = 0
        for p in parts:
            rows = slice(at, at + len(p.paths))
            elem_node[rows, : p.length] = p.elem_node
            elem_true[rows, : p.length] = p.elem_true
            elem_slot[rows, : p.length] = p.elem_slot
            slot_feature[rows, : p.d] = p.slot_feature
            z[rows, : p.d] = p.z
            d_of[rows] = p.d
            at += len(p.paths)
        return _PathGroup(length, d, np.concatenate([p.paths for p in parts]), elem_node, elem_true, elem_slot, slot_feature, z, None, d_of)

    @staticmethod
    def _table(z: np.ndarray, slot: np.ndarray, length: int, d: int) -> np.ndarray:
        """(P, d, 2^E): the Shapley values for every pattern of path nodes the row satisfies.

        A feature is "on" (o_k = 1) when the row satisfies every node on the path
        that splits on it; with repeated features several node patterns share a value.
        """
        bits = (np.arange(2**length)[:, None] >> np.arange(length)) & 1  # (B, E)
        parts = []
        for i in range(0, len(z), 256):
            s = slot[i : i + 256]
            o = np.ones((len(s), 2**length, d))
            for e in range(length):
                # o_k *= bit_e for the feature slot node e splits on
                o[np.arange(len(s)), :, s[:, e]] *= bits[None, :, e]
            parts.append(_path_games(z[i : i + 256], o).transpose(0, 2, 1))
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def shap_values(self, x: np.ndarray) -> np.ndarray:
        """(N, F, K) attributions; each row's sum plus ``expected`` is its margin.

        Rows run in blocks, each block as torch tensors laid out one path (or node)
        per row and one data row per column, so every gather copies contiguous memory,
        and the values of all paths reach their features in one sparse product.
        """
        import torch

        trees = self.trees
        x = trees._check(x)
        n_features = max(x.shape[1], trees.n_features)
        n_outputs = trees.n_outputs
        internal = np.flatnonzero(trees.feature >= 0)
        groups = self.groups_for(len(x))
        per_row = sum(len(g.paths) * (g.d + g.length if g.table is not None else 4 * g.d + g.length) for g in groups) + 2 * len(internal)
        step = max(16, 2 * _BLOCK_VALUES // max(per_row, 1))
        phi = np.zeros((len(x), n_features, n_outputs))
        prepared = [self._torch_group(group, n_features, internal) for group in groups]
        feature = torch.as_tensor(trees.feature[internal])
        threshold = torch.as_tensor(trees.threshold[internal].astype(x.dtype))[:, None]
        mode = torch.as_tensor(trees.mode[internal])[:, None]
        missing = torch.as_tensor(trees.missing_true[internal])[:, None]
        columns = torch.as_tensor(np.ascontiguousarray(x.T))
        for start in range(0, len(x), step):
            values = columns[:, start : start + step][feature]  # (internal nodes, n)
            decisions = _compare(torch, values, threshold, mode, missing)
            # Row i: node i's true branch taken; row I + i: its false branch.
            branches = torch.cat([decisions, ~decisions, torch.ones((1, decisions.shape[1]), dtype=torch.bool)])
            out = torch.zeros((n_features * n_outputs, values.shape[1]), dtype=torch.float64)
            for group, tensors in zip(groups, prepared):
                out += self._group_values(torch, group, tensors, branches)
            phi[start : start + values.shape[1]] = out.reshape(n_features, n_outputs, -1).permute(2, 0, 1).numpy()
        return phi

    def target_maps(self, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Attributions (N, F) of each row's target class, in the space the trees add up in.

        What an explainer needs from the model, so a plugin reaches it through the
        model's ``tree_shap()`` and never imports this module.
        """
        maps, _ = explained_scores(self.trees, self.shap_values(x), self.expected, targets)
        return maps

    def _torch_group(self, group: _PathGroup, n_features: int, internal: np.ndarray) -> dict:
        import torch

        position = np.zeros(len(self.trees.feature), dtype=np.int64)
        position[internal] = np.arange(len(internal))
        # Rows of ``branches``: node i's true branch, I + i its false one, 2I always taken (padding).
        branch_row = np.where(group.elem_node >= 0, position[np.maximum(group.elem_node, 0)] + np.where(group.elem_true, 0, len(internal)),
                              2 * len(internal))
        n_outputs = self.trees.n_outputs
        leaf_value = self.trees.leaf_value[group.paths]  # (P, K)
        # Sparse (F * K, P * d): value j = (path, slot) goes to (its feature, class c) weighted by the leaf's value.
        slot_feature = group.slot_feature.ravel()
        j = np.flatnonzero(slot_feature >= 0)
        rows = (slot_feature[j][:, None] * n_outputs + np.arange(n_outputs)).ravel()
        cols = np.repeat(j, n_outputs)
        weights = leaf_value[j // group.d].ravel()
        dtype = torch.float32 if group.table is not None else torch.float64
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch calls sparse CSR support "beta"; the product is checked by the tests
            scatter = torch.sparse_coo_tensor(torch.as_tensor(np.stack([rows, cols])), torch.as_tensor(weights, dtype=dtype),
                                              (n_features * n_outputs, len(slot_feature))).coalesce().to_sparse_csr()
        return {
            "branch_row": torch.as_tensor(np.ascontiguousarray(branch_row.T)),  # (E, P)
            "table": None if group.table is None else torch.as_tensor(group.table),
            "scatter": scatter,
        }

    def _group_values(self, torch, group: _PathGroup, tensors: dict, branches):
        n = branches.shape[1]
        d = group.d
        n_paths = len(group.paths)
        if tensors["table"] is not None:
            # Bit e of a row's pattern: the row takes the path's branch at its e-th node.
            pattern = torch.zeros((n_paths, n), dtype=torch.uint8 if group.length <= 8 else torch.int64)
            for e in range(group.length):
                pattern |= branches[tensors["branch_row"][e]].to(pattern.dtype) << e
            values = tensors["table"].gather(2, pattern.long()[:, None, :].expand(n_paths, d, n))  # (P, d, n)
        else:
            on = np.ones((n_paths, n, d + 1))
            taken = branches[tensors["branch_row"]].numpy()  # (E, P, n)
            paths = np.arange(n_paths)
            for e in range(group.length):
                on[paths, :, group.elem_slot[:, e]] *= taken[e]
            on = on[:, :, :d] * (np.arange(d) < group.d_of[:, None])[:, None, :]
            values = torch.as_tensor(np.ascontiguousarray(_path_games(group.z, on, group.d_of).transpose(0, 2, 1)))
        return (tensors["scatter"] @ values.reshape(n_paths * d, n)).double()


def _compare(torch, values, threshold, mode, missing):
    """Which branch each (node, row) pair takes: True for the node's true child."""
    ops = (torch.le, torch.lt, torch.ge, torch.gt, torch.eq, torch.ne)
    codes = torch.unique(mode).tolist()
    if len(codes) == 1:  # every split of the same kind, as converters write them
        result = ops[codes[0]](values, threshold)
    else:
        result = torch.zeros(values.shape, dtype=torch.bool)
        for code in codes:
            result = torch.where(mode == code, ops[code](values, threshold), result)
    if bool(missing.any()):
        result = result | (torch.isnan(values) & missing)
    return result


def explained_scores(trees: TreeEnsemble, phi: np.ndarray, expected: np.ndarray, target: np.ndarray):
    """Attributions (N, F) and expected values (N,) of each row's target class, in the margin space.

    A binary model with one score column (a binary classifier's positive class, or a
    regressor read as a binary classifier's score) explains the positive class's margin;
    the negative class's margin is its negation, and so are its attributions.
    """
    target = np.asarray(target, dtype=np.int64)
    rows = np.arange(len(phi))
    if trees.single_score or trees.n_outputs == 1:
        sign = np.where(target == 1, 1.0, -1.0)
        return phi[:, :, 0] * sign[:, None], expected[0] * sign
    return phi[rows, :, target], expected[target]
