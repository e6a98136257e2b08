"""The project's class order and every database's own label codes mapped onto it.

One order everywhere, FER2013's (docs/architecture.md): 0 anger, 1 disgust,
2 fear, 3 happiness, 4 sadness, 5 surprise, 6 neutral. Six-class datasets
(Oulu-CASIA, MMI) use 0-5. Contempt exists only in CK+; it is dropped by
default and, when a user keeps it, gets the next free label, 7, so that the
first seven labels keep their meaning in every dataset.
"""

CLASS_NAMES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral",
               "contempt")
CLASS_ABBREVIATIONS = ("An", "Di", "Fe", "Ha", "Sa", "Su", "Ne", "Co")
ANGER, DISGUST, FEAR, HAPPINESS, SADNESS, SURPRISE, NEUTRAL, CONTEMPT = range(8)
SIX_CLASSES = 6     # An Di Fe Ha Sa Su
SEVEN_CLASSES = 7   # + Ne

# CK+ Emotion/*_emotion.txt codes (CK+ README): 0 neutral, 1 anger, 2 contempt,
# 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise.
CKPLUS_EMOTION_CODES = {0: NEUTRAL, 1: ANGER, 2: CONTEMPT, 3: DISGUST, 4: FEAR,
                        5: HAPPINESS, 6: SADNESS, 7: SURPRISE}

# fer2013.csv "emotion" column: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad,
# 5 Surprise, 6 Neutral - already the project's order.
FER2013_EMOTION_CODES = {code: code for code in range(SEVEN_CLASSES)}

# Oulu-CASIA expression folder names.
OULU_FOLDERS = {"Anger": ANGER, "Disgust": DISGUST, "Fear": FEAR, "Happiness": HAPPINESS,
                "Sadness": SADNESS, "Surprise": SURPRISE}

# Names met in the common exports (FER2013 image folders, CK+48 folders,
# user CSVs), matched case-insensitively.
_NAME_TO_LABEL = {
    "anger": ANGER, "angry": ANGER, "an": ANGER,
    "disgust": DISGUST, "disgusted": DISGUST, "di": DISGUST,
    "fear": FEAR, "fearful": FEAR, "fe": FEAR,
    "happiness": HAPPINESS, "happy": HAPPINESS, "ha": HAPPINESS,
    "sadness": SADNESS, "sad": SADNESS, "sa": SADNESS,
    "surprise": SURPRISE, "surprised": SURPRISE, "su": SURPRISE,
    "neutral": NEUTRAL, "ne": NEUTRAL,
    "contempt": CONTEMPT, "co": CONTEMPT,
}


def label_from_name(name):
    """Class name, abbreviation or common export folder name -> label; None if unknown."""
    return _NAME_TO_LABEL.get(str(name).strip().lower())


def parse_label(text):
    """A label written in an index CSV: a project label id ("3") or a name ("happy").

    Returns the label or raises ValueError with a message naming the value.
    """
    text = str(text).strip()
    if not text:
        raise ValueError("missing label")
    if text.lstrip("-").isdigit():
        label = int(text)
        if not 0 <= label < len(CLASS_NAMES):
            raise ValueError(f"label {label} out of range 0..{len(CLASS_NAMES) - 1} "
                             f"({', '.join(CLASS_NAMES)})")
        return label
    label = label_from_name(text)
    if label is None:
        raise ValueError(f"unknown label {text!r}; use 0..{len(CLASS_NAMES) - 1} or one of "
                         f"{', '.join(CLASS_NAMES)}")
    return label


def class_names(num_classes):
    """The first ``num_classes`` class names in label order."""
    if not 1 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(f"num_classes must be 1..{len(CLASS_NAMES)}, got {num_classes}")
    return list(CLASS_NAMES[:num_classes])
