"""Sobol' low-discrepancy points (quasi-Monte Carlo) in numpy, for the Sobol attribution masks."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_BITS = 30  # points are multiples of 2**-30: plenty for a few thousand masks


def _gf2_mulmod(a: int, b: int, modulus: int, degree: int) -> int:
    """a * b in GF(2)[x] modulo ``modulus`` (of the given degree)."""
    result = 0
    while b:
        if b & 1:
            result ^= a
        b >>= 1
        a <<= 1
        if a >> degree & 1:
            a ^= modulus
    return result


def _gf2_powmod(base: int, exponent: int, modulus: int, degree: int) -> int:
    result = 1
    while exponent:
        if exponent & 1:
            result = _gf2_mulmod(result, base, modulus, degree)
        base = _gf2_mulmod(base, base, modulus, degree)
        exponent >>= 1
    return result


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while p * p <= n:
        if n % p == 0:
            factors.append(p)
            while n % p == 0:
                n //= p
        p += 1
    if n > 1:
        factors.append(n)
    return factors


def _is_primitive(poly: int, degree: int) -> bool:
    """A polynomial of this degree is primitive iff x has multiplicative order 2**degree - 1."""
    order = (1 << degree) - 1
    if _gf2_powmod(2, order, poly, degree) != 1:
        return False
    return all(_gf2_powmod(2, order // q, poly, degree) != 1 for q in _prime_factors(order))


@lru_cache(maxsize=None)
def primitive_polynomials(count: int) -> tuple[tuple[int, int], ...]:
    """The first ``count`` primitive polynomials over GF(2) as (degree, bits), by degree then value."""
    found: list[tuple[int, int]] = []
    degree = 1
    while len(found) < count:
        for poly in range(1 << degree, 1 << (degree + 1)):
            if poly & 1 and _is_primitive(poly, degree):
                found.append((degree, poly))
                if len(found) == count:
                    break
        degree += 1
    return tuple(found)


@lru_cache(maxsize=None)
def direction_numbers(dimensions: int) -> np.ndarray:
    """Direction integers V[dim, bit] (scaled to _BITS bits) of a Sobol' sequence.

    Dimension 0 is the van der Corput sequence; dimension d >= 1 uses the d-th
    primitive polynomial with odd initial numbers m_k < 2**k (Bratley and Fox):
    any such choice gives a valid (t, s)-sequence. They are drawn from a fixed
    generator, so the sequence is the same in every run.
    """
    table = np.zeros((dimensions, _BITS), dtype=np.int64)
    table[0] = [1 << (_BITS - 1 - k) for k in range(_BITS)]
    if dimensions == 1:
        return table
    init_rng = np.random.default_rng(2021)
    for dim, (degree, poly) in enumerate(primitive_polynomials(dimensions - 1), start=1):
        m = [int(2 * init_rng.integers(0, 1 << k) + 1) if k else 1 for k in range(degree)]
        # m_k for k = 1..degree must be odd and below 2**k; k = 0 here is m_1 = 1.
        coefficients = [(poly >> (degree - i)) & 1 for i in range(1, degree)]  # a_1 .. a_{s-1}
        for k in range(degree, _BITS):
            value = m[k - degree] ^ (m[k - degree] << degree)
            for i, a in enumerate(coefficients, start=1):
                if a:
                    value ^= m[k - i] << i
            m.append(value)
        table[dim] = [m[k] << (_BITS - 1 - k) for k in range(_BITS)]
    return table


def sobol_points(n: int, dimensions: int) -> np.ndarray:
    """The first ``n`` points of a ``dimensions``-dimensional Sobol' sequence, in [0, 1)."""
    if n >= 1 << _BITS:
        raise ValueError("too many Sobol points")
    table = direction_numbers(dimensions)
    index = np.arange(n, dtype=np.int64)
    gray = index ^ (index >> 1)
    points = np.zeros((n, dimensions), dtype=np.int64)
    for bit in range(max(1, int(n).bit_length())):
        has_bit = ((gray >> bit) & 1).astype(bool)
        points[has_bit] ^= table[:, bit]
    return points.astype(np.float64) / float(1 << _BITS)
