"""`python -m cifar_exp.eval` and `python -m cifar_exp.predict` on a real trained run."""

import json

import pytest
import torch
from PIL import Image

from cifar_exp.components.tta import tta_logits
from cifar_exp.datasets import load_dataset
from cifar_exp.datasets.batches import to_model_input
from cifar_exp.errors import UserError
from cifar_exp.eval import format_per_class, format_table, text_width
from helpers.cli import run_cli_in_process, run_in_process
from helpers.overrides import TINY, TINY_TRAINER
from helpers.paths import CONF_DIR


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    run_dir = folder / "run"
    assert run_in_process(*TINY, "trainer.epochs=2", f"hydra.run.dir={run_dir}", cwd=folder) == 0
    return folder / "run"


@pytest.fixture
def compose_app():
    """compose_app(name, overrides): the eval or predict config, composed by Hydra."""
    from hydra import compose, initialize_config_dir

    import cifar_exp.predict  # noqa: F401  (registers schemas and resolvers)

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda name, overrides=(): compose(name, overrides=list(overrides))


def test_eval_reports_what_training_measured(trained, tmp_path):
    out = tmp_path / "eval"
    proc = run_cli_in_process(
        f"ckpt={trained}", f"hydra.run.dir={out}", module="cifar_exp.eval", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "eval.json").read_text())
    final = json.loads((trained / "metrics.json").read_text())["final"]
    assert results["acc"] == final["test_acc"]
    assert results["loss"] == pytest.approx(final["test_loss"], rel=1e-5)
    matrix = torch.tensor(results["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 128 == results["images"]
    assert matrix.sum(0).tolist() != [0] * 10
    per_class = (matrix.diag() / matrix.sum(1)).tolist()
    assert list(results["per_class_acc"].values()) == pytest.approx(per_class)
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"test loss (NLL) {results['loss']:.4f}  accuracy {results['acc']:.4f}" in proc.stdout
    assert "confusion matrix (rows: true class, columns: predicted)" in proc.stdout
    row = proc.stdout.split("class_0 ")[-1].split()  # the table's first row
    assert [int(v) for v in row[:10]] == matrix[0].tolist()


# Longer than the 8 characters the table once cut names to, wide (CJK: two terminal columns
# per character) and with a combining accent (no column of its own).
ODD_NAMES = ["automobile_with_trailer", "東京の消防車", "cafe\u0301", "x"]


def cell_edges(line: str, cells: list[str]) -> list[tuple[int, int]]:
    """(first, last + 1) terminal column of each of `cells`, found left to right in `line`."""
    edges, pos = [], 0
    for cell in cells:
        start = line.index(cell, pos)
        pos = start + len(cell)
        edges.append((text_width(line[:start]), text_width(line[:pos])))
    return edges


def assert_aligned(table: str, classes: list[str], matrix: list[list[int]]) -> None:
    """Every class name whole in the header, each column's cells ending at one terminal
    column, at least two columns between neighbouring cells, each row's name at the left."""
    header, *rows = table.splitlines()
    assert len(rows) == len(classes)
    lines = [(header, ["true \\ predicted", *classes])]
    lines += [(r, [name, *map(str, n)]) for r, name, n in zip(rows, classes, matrix, strict=True)]
    column_ends = None
    for line, cells in lines:
        edges = cell_edges(line, cells)
        assert edges[0][0] == 0, line
        assert all(
            start - end >= 2 for (_, end), (start, _) in zip(edges, edges[1:], strict=False)
        ), line
        column_ends = column_ends or [end for _, end in edges[1:]]
        assert [end for _, end in edges[1:]] == column_ends, line


def test_terminal_width_of_long_wide_and_combining_names():
    assert [text_width(name) for name in ODD_NAMES] == [23, 12, 4, 1]


def test_confusion_table_aligns_every_column_to_the_longest_class_name():
    matrix = [[12345, 0, 7, 1], [3, 40, 0, 0], [0, 0, 5, 0], [1, 2, 3, 4]]
    table = format_table(torch.tensor(matrix), ODD_NAMES)
    assert_aligned(table, ODD_NAMES, matrix)
    widths = {text_width(line) for line in table.splitlines()}
    assert widths == {23 + 4 * (2 + 23)}  # the name column, then four columns of 2 + 23
    rows = [
        {"precision": p, "recall": 0.25, "f1": 1.0, "images": n} for p, n in ((0.5, 7), (0, 12345))
    ]
    lines = format_per_class(dict(zip(ODD_NAMES, rows * 2, strict=True)))
    # The name column, then precision, recall, F1 and images, each 2 apart.
    assert {text_width(line) for line in lines.splitlines()} == {2 + 23 + 2 + 9 + 3 * (2 + 6)}


def test_eval_table_of_a_run_on_long_and_unicode_class_names(tmp_path):
    classes = sorted(["automobile_with_trailer", "東京の消防車", "café"])
    for split in ("train", "test"):
        for i, name in enumerate(classes):
            (tmp_path / "images" / split / name).mkdir(parents=True)
            for k in range(4):
                image = Image.new("RGB", (32, 32), (80 * i, 255 - 60 * i, 40 * k))
                image.save(tmp_path / "images" / split / name / f"{k}.png")
    run_dir = tmp_path / "run"
    data = ["dataset=imagefolder", "dataset.root=images", f"dataset.cache_dir={tmp_path / 'c'}"]
    run = [*TINY_TRAINER, "trainer.log_images=false", *data, f"hydra.run.dir={run_dir}"]
    assert run_in_process(*run, cwd=tmp_path) == 0
    out = tmp_path / "eval"
    proc = run_cli_in_process(
        f"ckpt={run_dir}", f"hydra.run.dir={out}", module="cifar_exp.eval", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "eval.json").read_text())
    assert results["classes"] == classes
    lines = proc.stdout.splitlines()
    start = lines.index("confusion matrix (rows: true class, columns: predicted):") + 1
    table = "\n".join(lines[start : start + 1 + len(classes)])
    assert_aligned(table, classes, results["confusion_matrix"])


def test_predict_any_size_and_mode_preprocessed_as_in_training(trained, tmp_path):
    from cifar_exp.training.inference import load_trained

    data = load_dataset({"name": "synthetic", "train_size": 256, "test_size": 128})
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    pixels = data.test.images[0].permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(images / "exact.png")  # lossless, training size
    Image.fromarray(pixels).resize((96, 80)).save(images / "sub" / "large.jpg")
    Image.fromarray(pixels).convert("L").save(images / "sub" / "grey.bmp")
    (images / "notes.txt").write_text("not an image, not picked up")

    out = tmp_path / "predict"
    proc = run_cli_in_process(
        f"ckpt={trained}",
        f"images={images}",
        "top_k=3",
        f"hydra.run.dir={out}",
        module="cifar_exp.predict",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "predictions.json").read_text())
    assert [r["image"] for r in results] == [
        str(images / name) for name in ("exact.png", "sub/grey.bmp", "sub/large.jpg")
    ]
    for r in results:
        probs = [t["prob"] for t in r["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert all(t["class"].startswith("class_") for t in r["top"])
        assert f"{r['image']}: {r['top'][0]['class']} {probs[0]:.3f}" in proc.stdout

    model, _, _ = load_trained(str(trained), torch.device("cpu"))
    with torch.no_grad():
        expected = model(to_model_input(data.test.images[:1], torch.device("cpu"))).softmax(1)[0]
    top = expected.topk(3)
    assert [t["class"] for t in results[0]["top"]] == [f"class_{i}" for i in top.indices.tolist()]
    assert [t["prob"] for t in results[0]["top"]] == pytest.approx(top.values.tolist(), abs=1e-6)


def test_eval_and_predict_with_test_time_augmentation(trained, tmp_path):
    from cifar_exp.training.inference import load_trained

    out = tmp_path / "eval"
    proc = run_cli_in_process(
        f"ckpt={trained}",
        "tta=flip_translate",
        f"hydra.run.dir={out}",
        module="cifar_exp.eval",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "eval.json").read_text())
    data = load_dataset({"name": "synthetic", "train_size": 256, "test_size": 128})
    model, _, _ = load_trained(str(trained), torch.device("cpu"))
    inputs = to_model_input(data.test.images, torch.device("cpu"))
    with torch.no_grad():
        logits = tta_logits(model, inputs, "flip_translate")
    assert results["tta"] == "flip_translate"
    assert results["acc"] == (logits.argmax(1) == data.test.labels).double().mean().item()
    assert "(128 images, test-time augmentation: flip_translate)" in proc.stdout

    image = tmp_path / "images" / "one.png"
    image.parent.mkdir()
    Image.fromarray(data.test.images[0].permute(1, 2, 0).numpy()).save(image)
    proc = run_cli_in_process(
        f"ckpt={trained}",
        f"images={image}",
        "tta=flip",
        "top_k=1",
        f"hydra.run.dir={tmp_path / 'predict'}",
        module="cifar_exp.predict",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    top = json.loads((tmp_path / "predict" / "predictions.json").read_text())[0]["top"][0]
    with torch.no_grad():
        expected = tta_logits(model, inputs[:1], "flip").softmax(1)[0]
    assert top["prob"] == pytest.approx(expected.max().item(), abs=1e-6)
    assert top["class"] == f"class_{expected.argmax().item()}"


@pytest.mark.parametrize(
    "app, overrides, message",
    [
        ("eval", [], "ckpt is required: python -m cifar_exp.eval ckpt="),
        ("eval", ["ckpt=missing.pt"], "no such checkpoint or run directory"),
        ("predict", ["ckpt={run}"], "images is required"),
        ("predict", ["ckpt={run}", "images=nowhere"], "images=nowhere: no such file or folder"),
        ("predict", ["ckpt={run}", "images={empty}"], "no image files in"),
        ("predict", ["ckpt={run}", "images={bad}"], "is not an image that can be read"),
        ("predict", ["ckpt={run}", "images={bad}", "top_k=0"], "top_k must be >= 1, got 0"),
        ("eval", ["ckpt={run}", "tta=mirror"], "tta must be one of none, flip, flip_translate"),
        ("predict", ["ckpt={run}", "images={bad}", "tta=x"], "tta must be one of none, flip, "),
    ],
)
def test_bad_eval_and_predict_inputs_give_one_clear_error(
    trained, tmp_path, compose_app, app, overrides, message
):
    from cifar_exp.eval import evaluate_checkpoint
    from cifar_exp.predict import predict

    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.png").write_text("no pixels here")
    paths = {"run": trained, "empty": tmp_path / "empty", "bad": tmp_path / "bad.png"}
    cfg = compose_app(app, [o.format(**paths) for o in overrides])
    with pytest.raises(UserError, match=message):
        (evaluate_checkpoint if app == "eval" else predict)(cfg, tmp_path)


def test_eval_of_a_damaged_checkpoint_exits_with_one_message(trained, tmp_path):
    bad = tmp_path / "last.pt"
    data = (trained / "checkpoints" / "last.pt").read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    proc = run_cli_in_process(
        f"ckpt={bad}", f"hydra.run.dir={tmp_path / 'e'}", module="cifar_exp.eval", cwd=tmp_path
    )
    assert proc.returncode == 1
    assert f"checkpoint {bad} is truncated or corrupted" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
