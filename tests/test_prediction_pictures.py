"""Pictures of predictions (mnist_edge.prediction_pictures) and `run --show` / `run --labels`.

The pictures are checked by their pixels: bar lengths follow the probabilities, a wrong
prediction is framed and coloured, the input as given is the photo and not the 28 x 28 digit.
Bad options are one `error:` line, exit 2, and nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mnist_edge import prediction_pictures as pictures
from mnist_edge.cli import app
from mnist_edge.data import load_split
from mnist_edge.errors import InputImageError, OutputError
from mnist_edge.runtime import Predictor
from tests.onnx_models import idx_bytes, photo_of

runner = CliRunner()


@pytest.fixture(scope="module")
def digits(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    test = load_split("test", download=False)
    return test.images[:40], test.labels[:40]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def longest_run(image: Image.Image, colour: tuple[int, int, int]) -> int:
    """The longest horizontal run of exactly `colour`: a bar's length in pixels."""
    mask = np.all(np.asarray(image.convert("RGB")) == colour, axis=2)
    best = 0
    for row in mask:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        if len(edges):
            best = max(best, int((edges[1::2] - edges[::2]).max()))
    return best


def probabilities(*pairs: tuple[int, float]) -> np.ndarray:
    p = np.zeros(10, np.float32)
    for digit, value in pairs:
        p[digit] = value
    return p


# --- one sample ---------------------------------------------------------------------------------


def test_bars_follow_the_probabilities_and_colour_the_verdict(digits):
    sample = pictures.Sample(digits[0][0], probabilities((3, 0.7), (5, 0.2), (8, 0.1)), "x", true=5)
    image = pictures.sample_picture(sample, top=3)
    # The predicted 3 is wrong (red), the true 5 right (green), the 8 neither (blue).
    assert abs(longest_run(image, pictures._WRONG) - 0.7 * pictures._BAR) <= 2
    assert abs(longest_run(image, pictures._RIGHT) - 0.2 * pictures._BAR) <= 2
    assert abs(longest_run(image, pictures._BLUE) - 0.1 * pictures._BAR) <= 2
    right = pictures.sample_picture(pictures.Sample(digits[0][0], probabilities((3, 0.7), (5, 0.3)), true=3))
    assert longest_run(right, pictures._WRONG) == 0
    assert abs(longest_run(right, pictures._RIGHT) - 0.7 * pictures._BAR) <= 2


def test_a_true_digit_outside_the_top_is_named_under_the_bars(digits):
    p = probabilities((1, 0.5), (2, 0.3), (3, 0.19), (9, 0.01))
    with_it = pictures.sample_picture(pictures.Sample(digits[0][0], p, true=9), top=3)
    without = pictures.sample_picture(pictures.Sample(digits[0][0], p, true=1), top=3)
    bars_left = 4 * pictures._MARGIN + 2 * pictures._PANEL
    below_bars = (slice(pictures._MARGIN + 44 + 18 + 3 * 24, None), slice(bars_left, None))
    assert np.asarray(with_it.convert("L"))[below_bars].min() < 128  # the line "labelled 9: 1.00%"
    assert np.asarray(without.convert("L"))[below_bars].min() == 255


def given_panel(image: Image.Image) -> np.ndarray:
    top = pictures._MARGIN + 44 + 16
    left = pictures._MARGIN
    return np.asarray(image.convert("L"))[top:top + pictures._PANEL, left:left + pictures._PANEL]


def test_the_input_as_given_is_the_photo_not_the_digit(digits):
    photo = photo_of(digits[0][0])
    drawn = pictures.sample_picture(pictures.Sample(digits[0][0], probabilities((7, 1.0)), given=photo))
    plain = pictures.sample_picture(pictures.Sample(digits[0][0], probabilities((7, 1.0))))
    assert given_panel(drawn).mean() > 150  # light paper
    assert given_panel(plain).mean() < 80  # MNIST's black field
    assert np.array_equal(given_panel(plain)[::6, ::6], digits[0][0])  # 6 x 6 pixels per MNIST pixel


def test_predict_picture_takes_a_file_or_an_array(zoo, digits, tmp_path):
    predictor = Predictor.load(zoo["exported"])
    photo_of(digits[0][0]).save(tmp_path / "photo.jpg")
    from_file = pictures.predict_picture(predictor, tmp_path / "photo.jpg", true=int(digits[1][0]))
    from_array = pictures.predict_picture(predictor, digits[0][0], name="test image 0")
    assert given_panel(from_file).mean() > 150 and given_panel(from_array).mean() < 80
    np.save(tmp_path / "many.npy", digits[0][:3])
    with pytest.raises(InputImageError, match="holds 3 images; a picture shows one"):
        pictures.predict_picture(predictor, tmp_path / "many.npy")


# --- contact sheet --------------------------------------------------------------------------------


def frame_pixels(sheet: Image.Image, index: int, colour: tuple[int, int, int], columns: int) -> int:
    y, x = pictures._cell_origin(index, columns)
    cell = np.asarray(sheet)[y:y + pictures._CELL_H, x:x + pictures._CELL_W]
    return int(np.all(cell == colour, axis=2).sum())


def test_the_sheet_frames_wrong_predictions_red_and_unsure_ones_amber(digits):
    images = digits[0][:30]
    p = np.tile(probabilities((1, 0.9), (2, 0.1)), (30, 1))
    p[4] = probabilities((1, 0.4), (2, 0.35), (3, 0.25))  # unsure
    true = np.ones(30, np.int64)
    true[7] = 2  # wrong
    sheet = pictures.contact_sheet(images, p, true=true, columns=10)
    assert sheet.size == (pictures._LEFT + 10 * pictures._CELL_W + 6, pictures._HEADER + 3 * pictures._CELL_H + 6)
    assert frame_pixels(sheet, 7, pictures._WRONG, 10) > 4 * pictures._TILE  # the whole frame
    assert frame_pixels(sheet, 4, pictures._AMBER, 10) > 4 * pictures._TILE
    for i in (0, 4, 8, 29):
        assert frame_pixels(sheet, i, pictures._WRONG, 10) == 0
    # The digit the model saw, zoomed 2x, inside its cell.
    y, x = pictures._cell_origin(8, 10)
    tile = np.asarray(sheet.convert("L"))[y + 4:y + 4 + pictures._TILE:2, x + 4:x + 4 + pictures._TILE:2]
    assert np.array_equal(tile, images[8])


def test_confidence_reads_100_percent_only_when_it_is():
    assert pictures._percent(1.0) == "100%" and pictures._percent(0.996) == "99%"
    assert pictures._percent(0.5) == "50%" and pictures._percent(0.004) == "0%"


# --- files ------------------------------------------------------------------------------------------


def test_a_few_inputs_get_a_picture_each_many_a_sheet(digits, tmp_path):
    images, labels = digits
    p = np.eye(10, dtype=np.float32)[labels]
    names = [f"d.npy[{i}]" for i in range(len(images))]
    few = pictures.write_pictures(tmp_path / "few", names[:3], images[:3], p[:3], true=labels[:3])
    assert [f.name for f in few] == ["00000_d_npy_0_.png", "00001_d_npy_1_.png", "00002_d_npy_2_.png"]
    many = pictures.write_pictures(tmp_path / "many", names, images, p, true=labels)
    assert many == [tmp_path / "many" / "sheet.png"] and sorted((tmp_path / "many").iterdir()) == many
    each = pictures.write_pictures(tmp_path / "each", names, images, p, each=True, limit=25)
    assert len(each) == 25 and len(list((tmp_path / "each").iterdir())) == 25
    limited = pictures.write_pictures(tmp_path / "limited", names, images, p, limit=20)
    assert Image.open(limited[0]).size == (pictures._LEFT + 20 * pictures._CELL_W + 6,
                                           pictures._HEADER + pictures._CELL_H + 6)  # one row of the first 20


def test_pictures_go_into_an_existing_folder_beside_its_files_and_a_failure_leaves_nothing(
        digits, tmp_path, monkeypatch):
    images, labels = digits
    p = np.eye(10, dtype=np.float32)[labels]
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    pictures.write_pictures(tmp_path / "kept", ["a.png"], images[:1], p[:1])
    assert sorted(f.name for f in (tmp_path / "kept").iterdir()) == ["00000_a.png", "notes.txt"]

    def broken(*args, **kwargs):
        raise OutputError("disk full", tmp_path)

    monkeypatch.setattr(pictures, "contact_sheet", broken)
    with pytest.raises(OutputError):
        pictures.write_pictures(tmp_path / "new" / "pictures", ["x"] * 40, images, p)
    assert not (tmp_path / "new").exists()


# --- the CLI: run --show and --labels ---------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, digits) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("show")
    images, labels = digits
    files = {"npy": folder / "digits.npy", "labels_npy": folder / "labels.npy",
             "labels_idx": folder / "labels-idx1-ubyte", "images_idx": folder / "images-idx3-ubyte",
             "photo": folder / "photo.jpg", "short": folder / "short.npy", "floats": folder / "floats.npy",
             "outside": folder / "outside.npy", "column": folder / "column.npy"}
    np.save(files["npy"], images)
    np.save(files["labels_npy"], labels.astype(np.int32))
    files["labels_idx"].write_bytes(idx_bytes(labels.astype(np.uint8)))
    files["images_idx"].write_bytes(idx_bytes(images))
    photo_of(images[0]).save(files["photo"], quality=95)
    np.save(files["short"], labels[:-1])
    np.save(files["floats"], labels.astype(np.float32))
    np.save(files["outside"], np.where(np.arange(40) == 5, 10, labels))
    np.save(files["column"], labels[:, None])
    return files


@pytest.mark.parametrize("labels", ["labels_npy", "labels_idx", "column"])
def test_labels_add_right_or_wrong_and_the_accuracy(zoo, inputs, digits, labels):
    result = invoke("run", zoo["exported"], inputs["npy"], "--labels", inputs[labels], "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    predicted = np.array([int(row["digit"]) for row in payload["predictions"]])
    assert [row["label"] for row in payload["predictions"]] == [str(d) for d in digits[1]]
    assert [row["correct"] for row in payload["predictions"]] == (predicted == digits[1]).tolist()
    right = int((predicted == digits[1]).sum())
    assert payload["accuracy"] == {"correct": right, "count": 40, "accuracy": right / 40}
    assert 30 <= right < 40  # the linear model: about 85 %, so some are wrong


def test_labels_in_the_text_output(zoo, inputs):
    result = invoke("run", zoo["exported"], inputs["npy"], "--labels", inputs["labels_npy"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["input", "digit", "confidence", "top-3", "label"]
    assert lines[2].endswith(" right") or lines[2].endswith(" WRONG")
    assert lines[-1].startswith("accuracy ") and "of 40 right" in lines[-1]


def test_show_draws_one_picture_for_one_input_and_a_sheet_for_many(zoo, inputs, tmp_path):
    result = invoke("run", zoo["exported"], inputs["photo"], "--show", tmp_path / "one")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"picture: {tmp_path / 'one' / '00000_photo.png'}"
    assert given_panel(Image.open(tmp_path / "one" / "00000_photo.png")).mean() > 150  # the photo as given
    result = invoke("run", zoo["exported"], inputs["npy"], "--labels", inputs["labels_idx"],
                    "--show", tmp_path / "many")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["sheet.png"]
    result = invoke("run", zoo["exported"], inputs["npy"], "--show", tmp_path / "each", "--show-each",
                    "--show-limit", "12", "--json")
    assert result.exit_code == 0, result.output
    pictures_written = sorted(str(p) for p in (tmp_path / "each").iterdir())
    assert len(pictures_written) == 12
    assert sorted(json.loads(result.stdout)["pictures"]) == pictures_written  # --json names them


@pytest.mark.parametrize(("options", "message"), [
    (["--show-each"], "--show-each needs --show DIR"),
    (["--show-limit", "5"], "--show-limit needs --show DIR"),
    (["--show-each", "--show-limit", "5"], "--show-each and --show-limit need --show DIR"),
])
def test_show_options_without_show_are_refused(zoo, inputs, tmp_path, options, message):
    result = invoke("run", zoo["exported"], inputs["npy"], *options, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert one_error_line(result) == f"error: {message}"
    assert not any(tmp_path.iterdir())


def nothing_written(tmp_path: Path) -> bool:
    return not any(p for p in tmp_path.iterdir() if p.name != "afile")


@pytest.mark.parametrize(("option", "message"), [
    ("file", "exists and is not a directory (--show takes a folder)"),
    ("under_file", "cannot create directory (Not a directory)"),
    ("unwritable", "directory is not writable"),
])
def test_show_into_a_file_or_an_unwritable_place_is_refused_before_any_work(zoo, inputs, tmp_path, option,
                                                                            message):
    (tmp_path / "afile").write_text("mine")
    target = {"file": tmp_path / "afile", "under_file": tmp_path / "afile" / "pictures",
              "unwritable": Path("/proc/1/pictures")}[option]
    if option == "unwritable" and not Path("/proc/1").is_dir():
        pytest.skip("needs Linux's /proc")
    result = invoke("run", zoo["exported"], inputs["npy"], "--show", target, "--out", tmp_path / "out",
                    "--save-preprocessed", tmp_path / "seen")
    assert result.exit_code == 2
    assert one_error_line(result).endswith(message)
    assert nothing_written(tmp_path) and (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize(("labels", "message"), [
    ("short", "holds 39 labels for 40 images; give one label per image, in input order"),
    ("floats", "array of dtype float32; labels are integers"),
    ("outside", "label 10 at position 5 is not a class of the model (0 to 9); 1 such label(s)"),
    ("images_idx", "IDX file holds images, not labels"),
    ("npy", "array of shape (40, 28, 28); labels are one integer per input (N or N x 1)"),
])
def test_bad_labels_are_refused_before_anything_is_written(zoo, inputs, tmp_path, labels, message):
    result = invoke("run", zoo["exported"], inputs["npy"], "--labels", inputs[labels], "--show", tmp_path / "pics",
                    "--out", tmp_path / "out", "--save-preprocessed", tmp_path / "seen")
    assert result.exit_code == 2
    assert one_error_line(result) == f"error: {inputs[labels]}: {message}"
    assert not any(tmp_path.iterdir())


def test_a_skipped_input_is_named_in_the_labels_mismatch(zoo, inputs, tmp_path):
    (tmp_path / "broken.png").write_text("not an image")
    result = invoke("run", zoo["exported"], tmp_path / "broken.png", inputs["photo"], "--labels", inputs["short"])
    assert result.exit_code == 2
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"error: {tmp_path / 'broken.png'}: ")  # the skipped input, then why it matters
    assert errors[1] == (f"error: {inputs['short']}: holds 39 labels for 1 image (1 input(s) could not be read); "
                         "give one label per image, in input order")
