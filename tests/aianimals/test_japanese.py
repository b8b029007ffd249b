"""Japanese search terms: the normalisation both search engines must agree on."""

import pytest

from mlsys.aianimals.japanese import index_terms, query_terms


@pytest.mark.parametrize("spelling", ["ねこ", "ネコ", "猫", "ﾈｺ"])
def test_every_spelling_of_cat_is_one_query(spelling):
    assert query_terms(spelling) == [("猫", "ネコ")]


@pytest.mark.parametrize("spelling", ["いぬ", "犬", "イヌ"])
def test_dog_spellings_meet_in_the_index(spelling):
    # イヌ has no kanji normal form; its reading still matches what 犬 and いぬ index.
    [forms] = query_terms(spelling)
    assert set(forms) & set(index_terms("かわいい犬です"))


def test_particles_and_symbols_are_not_terms():
    assert query_terms("の、です。") == []
    assert "の" not in index_terms("柴犬のポチです。")


def test_compounds_are_indexed_whole_and_split():
    terms = index_terms("ブリティッシュショートヘア")
    assert {"ショートヘア", "ヘア", "ブリティッシュ"} <= set(terms)


def test_width_and_case_are_normalised():
    assert query_terms("\uff23\uff21\uff34") == query_terms("cat") == [("cat",)]  # full width
