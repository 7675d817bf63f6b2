"""The inspectors, headless (Agg): build each widget with a real model, move each control, and check that the
figure's data is what it should be, computed independently of the inspector."""
import base64
import io
import math

import ipywidgets as widgets
import numpy as np
import pytest
import torch
from IPython.core.formatters import DisplayFormatter
from PIL import Image

from alfred_fm.inspectors import (compare_reductions, embedding_geometry, inspect_candidates, plot_candidates,
                                  plot_reduction)
from reference import reference_scores

TEMPLATE = "Review: {}\nWas the review good or bad? Answer:"
CANDIDATES = [" good", " bad", " neither good nor bad"]
TEXTS = ["A cat sat on the mat.", "A kitten rested on the rug.", "Stocks fell sharply today.",
         "The market dropped at the open.", "I love this film."]


def axis(fig, label):
    return next(a for a in fig.axes if a.get_label() == label)


def image(ax):
    "The data of the picture drawn in `ax` (imshow keeps a masked array)."
    return np.ma.filled(ax.images[0].get_array(), np.nan)


def widths(ax, k=0):
    return [p.get_width() for p in ax.containers[k]]


def softmax(x, t=1.0):
    m = max(x.values())
    e = {k: math.exp((v - m) / t) for k, v in x.items()}
    return [e[k] / sum(e.values()) for k in x]


def png_size(data: bytes):
    return Image.open(io.BytesIO(data)).size


@pytest.fixture(scope="module")
def review_refs(smol):
    "Reference (one unpadded pair at a time) log-probabilities and token counts for the review and its content-free prompts."
    prompts = [TEMPLATE.format(x) for x in ("Boring and too long.", "N/A", "", "[MASK]")]
    refs = [reference_scores(smol, (p, CANDIDATES)) for p in prompts]
    ntok = {c: len(k) for c, k in zip(CANDIDATES, smol.backend.query_ids(prompts[0], CANDIDATES)[1])}
    return refs, ntok


def expected(refs, ntok, normalize, calibrate, temperature):
    "Probabilities by the definitions: length-normalise, divide by the mean content-free probability, softmax at T."
    length = {"sum": lambda c: 1, "mean": lambda c: ntok[c], "char": lambda c: len(c),
              "byte": lambda c: len(c.encode())}[normalize]
    norm = [{c: r[c] / length(c) for c in CANDIDATES} for r in refs]
    ranked = norm[0]
    if calibrate:
        cf = [dict(zip(CANDIDATES, softmax(n))) for n in norm[1:]]
        ranked = {c: ranked[c] - math.log(sum(p[c] for p in cf) / len(cf)) for c in CANDIDATES}
    return softmax(ranked, temperature), ranked


def test_inspect_candidates_every_control(smol, review_refs):
    refs, ntok = review_refs
    ins = inspect_candidates(smol, (TEMPLATE.format("Boring and too long."), CANDIDATES), content_free=TEMPLATE)
    fig = ins.fig
    # raw log-probabilities and the token grid never change with the controls
    assert widths(axis(fig, "log-probability")) == pytest.approx([refs[0][c] for c in CANDIDATES], abs=1e-4)
    grid = image(axis(fig, "tokens"))
    for i, c in enumerate(CANDIDATES):
        row = [v for _, v in ins.response.token_logprobs[c]]
        assert len(row) == ntok[c] and list(grid[i, :len(row)]) == pytest.approx(row)
        assert np.isnan(grid[i, len(row):]).all()     # no cells after the candidate's last token
        assert sum(row) == pytest.approx(refs[0][c], abs=1e-4)
    images = {ins.image.value}
    for normalize in ("sum", "mean", "char", "byte"):
        ins.normalize.value = normalize
        for calibrate in (False, True):
            ins.calibrate.value = calibrate
            for temperature in (0.5, 1.0, 4.0):
                ins.temperature.value = temperature
                fig = ins.fig
                want, ranked = expected(refs, ntok, normalize, calibrate, temperature)
                assert widths(axis(fig, "probability")) == pytest.approx(want, abs=1e-4), (normalize, calibrate, temperature)
                if normalize != "sum" or calibrate:   # the ranked numbers are drawn beside the raw ones
                    assert widths(axis(fig, "log-probability"), 1) == pytest.approx(list(ranked.values()), abs=1e-4)
                assert ins.response.prediction == CANDIDATES[int(np.argmax(want))]
                images.add(ins.image.value)
    assert len(images) == 4 * 2 * 3   # a new picture for each of the 24 states (the first equals the initial one)
    assert png_size(ins.image.value)[0] > 500
    bundle = ins._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle


def test_inspector_equals_score(smol):
    "Whatever the controls say, the figure and the prediction are what `score` returns with the same options."
    query = (TEMPLATE.format("Boring and too long."), CANDIDATES)
    ins = inspect_candidates(smol, query, content_free=TEMPLATE)
    steps = [("normalize", "char", dict(normalize="char")), ("calibrate", True, dict(calibrate=TEMPLATE)),
             ("temperature", 3.0, dict(temperature=3.0)), ("normalize", "mean", dict(normalize="mean"))]
    options = {}
    for control, value, option in [(None, None, {})] + steps:
        if control: getattr(ins, control).value = value
        options.update(option)
        want = smol.score(query, progress=False, token_logprobs=True, **options)
        assert widths(axis(ins.fig, "probability")) == pytest.approx(list(want.scores.values()), abs=1e-4), options
        assert ins.response.prediction == want.prediction


def test_inspectors_are_widgets(smol, minilm, review_refs):
    "Each inspector is a VBox: it sits inside other boxes and dashboards, and a control moved there still redraws it."
    refs, ntok = review_refs
    ins = inspect_candidates(smol, (TEMPLATE.format("Boring and too long."), CANDIDATES), content_free=TEMPLATE)
    ex = compare_reductions(minilm, TEXTS)
    for w in (ins, ex):
        assert isinstance(w, widgets.VBox) and w.children[1] is w.image
        assert w.image.value == base64.b64decode(w._repr_mimebundle_()["image/png"])   # the static fallback
    dashboard = widgets.VBox([widgets.HBox([ins, ex]), widgets.Label("two inspectors side by side")])
    assert dashboard.children[0].children == (ins, ex)
    shown, _ = DisplayFormatter().format(dashboard)   # what display() sends to a front end
    assert shown["application/vnd.jupyter.widget-view+json"]["model_id"] == dashboard.model_id
    shown, _ = DisplayFormatter().format(ins)
    assert shown["application/vnd.jupyter.widget-view+json"]["model_id"] == ins.model_id and "image/png" in shown

    before = ins.image.value
    dashboard.children[0].children[0].calibrate.value = True   # the control, reached through the dashboard
    want, _ = expected(refs, ntok, "sum", True, 1.0)   # redrawn with the new value (every control: the tests above)
    assert widths(axis(ins.fig, "probability")) == pytest.approx(want, abs=1e-4)
    assert ins.image.value != before and png_size(ins.image.value)[0] > 500

    before = ex.image.value
    dashboard.children[0].children[1].reduction.value = "max"
    emb = minilm.encode(TEXTS, reduction="max", progress=False)
    assert image(axis(ex.fig, "cosine")) == pytest.approx(cosine(emb), abs=1e-4)
    assert ex.image.value != before and png_size(ex.image.value)[0] > 500


def test_inspect_candidates_bad_options(llama):
    "Bad options fail before any scoring, with the messages of `score` (whatever the exception's type)."
    q = ("Q: what colour is grass? A:", [" green", " a shade of blue"])
    with pytest.raises(Exception, match="calibrate must be"): inspect_candidates(llama, q, content_free=[])
    with pytest.raises(Exception, match="unknown normalize='chars'"): inspect_candidates(llama, q, normalize="chars")
    with pytest.raises(Exception, match="temperature must be a positive"): inspect_candidates(llama, q, temperature=0)
    assert inspect_candidates(llama, q, temperature=0.02).temperature.value == pytest.approx(0.02)   # the slider goes there


def test_compare_reductions_bad_options(minilm):
    "A reduction `encode` does not know, or a layer the model does not have, fails before any work."
    with pytest.raises(Exception, match="unknown reduction"):
        compare_reductions(minilm, TEXTS, reductions=("mean", "median"))
    with pytest.raises(Exception, match="out of range"): compare_reductions(minilm, TEXTS, layer=7)


def test_calibration_flip_shows_in_the_inspector(smol):
    ins = inspect_candidates(smol, (TEMPLATE.format("Boring and too long."), [" good", " bad"]), content_free=TEMPLATE)
    assert ins.response.prediction == " good"
    ins.calibrate.value = True
    assert ins.response.prediction == " bad"
    assert widths(axis(ins.fig, "probability"))[1] > 0.5


def test_plot_candidates_plain_function(smol):
    r = smol.score((TEMPLATE.format("Great fun."), CANDIDATES), token_logprobs=True, normalize="char", progress=False)
    fig = plot_candidates(r)
    assert widths(axis(fig, "probability")) == pytest.approx(list(r.scores.values()))
    assert widths(axis(fig, "log-probability"), 1) == pytest.approx(list(r.adjusted.values()))
    fig.canvas.draw()   # renders under Agg without a display
    no_tokens = plot_candidates(smol.score((TEMPLATE.format("Great fun."), CANDIDATES), progress=False))
    assert [a.get_label() for a in no_tokens.axes] == ["probability", "log-probability"]


def cosine(e):
    u = torch.nn.functional.normalize(e.double(), dim=-1)
    return (u @ u.T).numpy()


@pytest.mark.parametrize("name", ["minilm", "smol"])
def test_compare_reductions_widget_every_control(name, request):
    model = request.getfixturevalue(name)
    ex = compare_reductions(model, TEXTS)
    n = model.model.config.num_hidden_layers + 1   # the blocks and the embedding layer
    assert (ex.layer.min, ex.layer.max, ex.layer.value) == (0, n - 1, n - 1)
    before = ex.image.value
    for reduction in ("mean", "sum", "first", "last", "max"):
        ex.reduction.value = reduction
        for layer in (n - 1, 1):
            ex.layer.value = layer
            emb = model.encode(TEXTS, reduction=reduction, layer=layer, progress=False)
            heat = image(axis(ex.fig, "cosine"))
            assert heat == pytest.approx(cosine(emb), abs=1e-4), (reduction, layer)
            assert np.asarray(axis(ex.fig, "pca").collections[0].get_offsets()) == pytest.approx(embedding_geometry(emb)[1], rel=1e-4, abs=1e-4)
    assert ex.image.value != before


def test_pca_matches_scikit_learn(minilm):
    sklearn = pytest.importorskip("sklearn.decomposition")
    emb = minilm.encode(TEXTS, reduction="max", progress=False)
    _, pcs, explained = embedding_geometry(emb)
    pca = sklearn.PCA(n_components=2).fit(emb.double().numpy())
    theirs = pca.transform(emb.double().numpy())
    assert np.abs(pcs) == pytest.approx(np.abs(theirs), abs=1e-5)    # principal components are defined up to sign
    assert explained == pytest.approx(pca.explained_variance_ratio_, abs=1e-6)


def test_static_compare_reductions_and_plot_reduction(smol):
    fig = compare_reductions(smol, TEXTS, reductions=("mean", "first", "last"), layer=5, interactive=False)
    for r in ("mean", "first", "last"):
        emb = smol.encode(TEXTS, reduction=r, layer=5, progress=False)
        assert image(axis(fig, f"cosine {r}")) == pytest.approx(cosine(emb), abs=1e-4)
        assert np.asarray(axis(fig, f"pca {r}").collections[0].get_offsets()) == pytest.approx(embedding_geometry(emb)[1], rel=1e-4, abs=1e-4)
    emb = smol.encode(TEXTS, reduction="last", progress=False)
    single = plot_reduction(emb, TEXTS, "last")
    assert image(axis(single, "cosine")) == pytest.approx(cosine(emb), abs=1e-6)   # the same numbers, drawn
    with pytest.raises(ValueError, match="5 texts for 4 embeddings"):
        plot_reduction(emb[:4], TEXTS)
    buf = io.BytesIO(); fig.savefig(buf, format="png")
    assert png_size(buf.getvalue())[0] > 500
    fig = compare_reductions(smol, TEXTS, reductions=("first", "last"), interactive=False)   # at the last layer
    emb = smol.encode(TEXTS, reduction="last", progress=False)
    assert image(axis(fig, "cosine last")) == pytest.approx(cosine(emb), abs=1e-4)
    # both texts start with "A", and a causal model's first token has seen only itself
    assert image(axis(fig, "cosine first"))[0, 1] == pytest.approx(1.0, abs=1e-6)   # one forward: the same state twice
