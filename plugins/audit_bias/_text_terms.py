"""Identity-term sets for counterfactual substitution in text: each set maps group names to slot-aligned terms.

A row that contains terms of group A gets a variant per other group B of the
same set, with every A term replaced by the B term in the same slot (he ->
she, his -> her, James -> Mary). Users add sets, or extend these, with the
``term_sets`` option of ``bias.counterfactual``.

Where one side has two words for one word on the other (his/him -> her), the
reverse swap picks the first (her -> his): a known limit of word swaps,
which the report states.
"""

from __future__ import annotations

TERM_SETS: dict[str, dict[str, list[str]]] = {
    "gender": {
        "male": ["he", "his", "him", "himself", "man", "men", "boy", "boys", "father", "son", "brother", "husband",
                 "mr", "sir", "gentleman", "gentlemen", "male", "uncle", "nephew", "grandfather", "king", "boyfriend"],
        "female": ["she", "her", "her", "herself", "woman", "women", "girl", "girls", "mother", "daughter", "sister", "wife",
                   "ms", "madam", "lady", "ladies", "female", "aunt", "niece", "grandmother", "queen", "girlfriend"],
    },
    # Given names most frequently associated with each perceived gender (US
    # census lists); names say nothing certain about a person's gender.
    "names": {
        "male": ["james", "john", "robert", "michael", "william", "david", "richard", "joseph", "thomas", "charles",
                 "daniel", "matthew", "anthony", "mark", "paul", "steven", "andrew", "kevin", "brian", "george"],
        "female": ["mary", "patricia", "jennifer", "linda", "elizabeth", "barbara", "susan", "jessica", "sarah", "karen",
                   "nancy", "lisa", "betty", "margaret", "sandra", "ashley", "emily", "donna", "michelle", "emma"],
    },
    "religion": {
        "christian": ["christian", "christians", "church", "christianity", "bible"],
        "muslim": ["muslim", "muslims", "mosque", "islam", "quran"],
        "jewish": ["jewish", "jews", "synagogue", "judaism", "torah"],
        "hindu": ["hindu", "hindus", "temple", "hinduism", "vedas"],
        "buddhist": ["buddhist", "buddhists", "monastery", "buddhism", "sutras"],
        "atheist": ["atheist", "atheists", "humanist", "atheism", "philosophy"],
    },
    "nationality": {
        "american": ["american", "americans", "america"],
        "mexican": ["mexican", "mexicans", "mexico"],
        "chinese": ["chinese", "chinese", "china"],
        "indian": ["indian", "indians", "india"],
        "nigerian": ["nigerian", "nigerians", "nigeria"],
        "german": ["german", "germans", "germany"],
        "british": ["british", "britons", "britain"],
        "russian": ["russian", "russians", "russia"],
        "brazilian": ["brazilian", "brazilians", "brazil"],
        "syrian": ["syrian", "syrians", "syria"],
    },
}
