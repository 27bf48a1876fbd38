"""Membership trait names (`segment_membership_traits`): Engage-style snake_case that keeps every script whole."""

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.outbound.traits import membership_traits, snake_case, trait_of

# Written by hand; the first block from the bug report (accents cut in two, other scripts emptied or merged).
NAMES = [
    ("Clients Fidèles", "clients_fidèles"),
    ("Käufer", "käufer"),
    ("Клиенты", "клиенты"),
    ("Акция x", "акция_x"),
    ("Скидка x", "скидка_x"),
    ("顧客 VIP", "顧客_vip"),
    ("ग्राहक सूची", "ग्राहक_सूची"),  # Devanagari: vowel signs and virama are marks, kept inside the word
    ("Cafe\u0301 Lovers", "café_lovers"),  # a decomposed accent is composed first (NFC)
    ("ÉtéPlus", "été_plus"),
    ("Paying Customers", "paying_customers"),
    ("PayingCustomers", "paying_customers"),
    ("payingCustomers2024", "paying_customers2024"),
    ("plan2Pro", "plan2_pro"),
    ("  VIP users  ", "vip_users"),
    ("X Men", "x_men"),
    ("__Trial__Users__", "trial_users"),
    ("Churn-risk (Q3)", "churn_risk_q3"),
    ("Pro 🔥 Users", "pro_users"),
]


@pytest.mark.parametrize("name,trait", NAMES)
def test_a_segment_name_becomes_a_snake_case_trait_keeping_its_script_and_accents(name, trait):
    assert snake_case(name) == trait


def test_a_name_without_letters_or_digits_gets_segment_and_a_digest_of_its_name():
    # sha256("🔥".encode()).hexdigest()[:8], and of "!!!", computed outside the code under test
    assert membership_traits([(1, "🔥"), (2, "!!!")]) == {"🔥": "segment_ed8d8305", "!!!": "segment_e84c538e"}


def test_names_that_give_one_trait_are_told_apart_the_oldest_keeping_it():
    traits = membership_traits([(7, "pro-users"), (3, "Pro Users"), (9, "PRO USERS")])
    assert traits["Pro Users"] == "pro_users"
    assert re.fullmatch(r"pro_users_[0-9a-f]{8}", traits["pro-users"])
    assert re.fullmatch(r"pro_users_[0-9a-f]{8}", traits["PRO USERS"])
    assert len(set(traits.values())) == 3
    # A name that reads like another's suffixed trait is told apart too (559aead0: sha256("A")[:8]).
    assert membership_traits([(1, "a"), (2, "A"), (3, "a 559aead0")])["A"] == "a_559aead0"
    assert len(set(membership_traits([(1, "a"), (2, "A"), (3, "a 559aead0")]).values())) == 3


def test_a_gone_name_keeps_the_trait_it_was_sent_under():
    traits = membership_traits([(3, "Pro Users")])
    assert trait_of("Pro Users", traits) == "pro_users"
    assert trait_of("Trial Users", traits) == "trial_users"  # renamed or deleted: its own trait, for its `false`
    assert re.fullmatch(r"pro_users_[0-9a-f]{8}", trait_of("pro-users", traits))  # it was the younger one


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=8, unique=True))
def test_distinct_segments_always_get_distinct_non_empty_traits(names):
    traits = membership_traits(enumerate(names))
    assert all(traits[name] for name in names)
    assert len(set(traits.values())) == len(names)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_a_trait_is_lower_case_words_joined_by_single_underscores_and_stable(name):
    trait = snake_case(name)
    words = trait.split("_") if trait else []
    assert all(words), trait  # no empty word: no leading, trailing or doubled underscore
    for char in trait.replace("_", ""):
        assert unicodedata.category(char)[0] in "LMN", (name, trait)
    # Lower-cased: nothing left to lower (a letter without a lower-case form, such as U+1D670, stays as it is).
    assert trait.lower() == trait, (name, trait)
    assert snake_case(trait) == trait
