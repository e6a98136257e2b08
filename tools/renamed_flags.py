"""Renamed command-line flags: the old spelling keeps working and says which flag replaced it.

    add_renamed_argument(parser, "--max-folds", ("--folds",), type=int)

Every tool renaming a flag goes through this, so the deprecation line reads the
same everywhere (one name per meaning across tools/).
"""
import argparse
import sys


class RenamedFlag(argparse.Action):
    """Store the value; given under an old name, say on stderr which flag replaced it."""

    def __init__(self, option_strings, dest, current=None, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.current = current

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string != self.current:
            print(f"warning: {option_string} is now {self.current}; the old name will go",
                  file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_renamed_argument(parser, flag, renamed_from, **kwargs):
    """``parser.add_argument(flag, ...)`` that also accepts the old spellings ``renamed_from``."""
    if not renamed_from:
        return parser.add_argument(flag, **kwargs)
    kwargs["help"] = f"{kwargs.get('help', '')} (formerly {', '.join(renamed_from)})"
    return parser.add_argument(flag, *renamed_from, action=RenamedFlag, current=flag, **kwargs)
