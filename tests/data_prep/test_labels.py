"""Class order and every database's label codes (docs/architecture.md, data_prep/labels.py)."""
import pytest

from data_prep import labels


def test_class_order_is_fer2013s():
    assert labels.class_names(7) == ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    assert labels.class_names(6) == labels.class_names(7)[:6]
    assert labels.CLASS_ABBREVIATIONS[:7] == ("An", "Di", "Fe", "Ha", "Sa", "Su", "Ne")
    assert labels.CLASS_NAMES[labels.CONTEMPT] == "contempt" and labels.CONTEMPT == 7


def test_ckplus_emotion_codes():
    # CK+ README: 0=neutral 1=anger 2=contempt 3=disgust 4=fear 5=happy 6=sadness 7=surprise
    expected = ["neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"]
    assert [labels.CLASS_NAMES[labels.CKPLUS_EMOTION_CODES[code]] for code in range(8)] == expected


def test_fer2013_codes_are_the_project_order():
    assert labels.FER2013_EMOTION_CODES == {code: code for code in range(7)}


def test_oulu_folders():
    assert {folder: labels.CLASS_NAMES[label] for folder, label in labels.OULU_FOLDERS.items()} == {
        "Anger": "anger", "Disgust": "disgust", "Fear": "fear", "Happiness": "happiness",
        "Sadness": "sadness", "Surprise": "surprise"}


@pytest.mark.parametrize("name, label", [
    ("angry", 0), ("Anger", 0), ("disgust", 1), ("fear", 2), ("happy", 3), ("HAPPINESS", 3),
    ("sad", 4), ("sadness", 4), ("surprise", 5), ("neutral", 6), ("contempt", 7), ("Su", 5)])
def test_export_folder_names(name, label):
    assert labels.label_from_name(name) == label


def test_unknown_names():
    assert labels.label_from_name("bored") is None


def test_parse_label_accepts_ids_and_names_and_rejects_the_rest():
    assert labels.parse_label(" 4 ") == 4
    assert labels.parse_label("surprised") == 5
    with pytest.raises(ValueError, match="missing label"):
        labels.parse_label("  ")
    with pytest.raises(ValueError, match="out of range"):
        labels.parse_label("8")
    with pytest.raises(ValueError, match="out of range"):
        labels.parse_label("-1")
    with pytest.raises(ValueError, match="unknown label 'bored'"):
        labels.parse_label("bored")
