"""The API reference (nbs/23_reference.ipynb): every public name has an entry, and every parameter a description.

The entries are made from the code when the site is built, so what can go wrong is a name left out of the
reference, or a parameter whose source has no comment beside it: these tests catch both.
"""
import alfred_fm
from alfred_fm.model import HuggingFaceModel
from alfred_fm.options import EncodeOptions, GenerateOptions, ScoreOptions
from alfred_fm.reference import entry, missing_descriptions, public_methods, reference_entries


def documented():
    return {name: obj for _, items in reference_entries() for name, obj in items}


def test_every_public_name_has_an_entry():
    names = documented()
    wanted = {*alfred_fm.__all__, "ScoreOptions", "GenerateOptions", "EncodeOptions", "AlfredLM",
              *(f"HuggingFaceModel.{m}" for m in public_methods(HuggingFaceModel)),
              *(f"AlfredLM.{m}" for m in ("loglikelihood", "loglikelihood_rolling", "generate_until"))}
    assert not wanted - set(names), wanted - set(names)
    for m in ("score", "generate", "encode", "run", "loglikelihood", "perplexity", "token_score", "bundled"):
        assert f"HuggingFaceModel.{m}" in names, m


def test_every_documented_parameter_has_a_description():
    assert missing_descriptions() == []


def test_a_method_lists_the_options_it_takes():
    "`score`, `generate` and `encode` take their options classes' fields: each is a row with its default and sentence."
    for method, options in ((HuggingFaceModel.score, ScoreOptions), (HuggingFaceModel.generate, GenerateOptions),
                            (HuggingFaceModel.encode, EncodeOptions)):
        text = entry(method, f"HuggingFaceModel.{method.__name__}")
        for f in options.names() - {"settings"}:
            row = next(l for l in text.splitlines() if l.startswith(f"| `` {f} `` |"))
            assert row.rstrip(" |").split("|")[-1].strip(), (method.__name__, f)
    row = next(l for l in entry(HuggingFaceModel.score).splitlines() if l.startswith("| `` normalize `` |"))
    assert "`'sum'`" in row and "mean" in row, row


def test_a_missing_comment_is_found():
    def undocumented(texts, # the texts
                     per="token"):
        "A function with one parameter left undescribed."
    assert missing_descriptions([("s", [("undocumented", undocumented)])]) == ["undocumented: per"]
