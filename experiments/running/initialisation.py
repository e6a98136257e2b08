"""Which weights each run of a paper table starts from: the paper's chain, public face model ->
FER2013 -> CK+, Oulu-CASIA and MMI.

The paper builds its nets on public face recognition models (Table 8: the center-loss face
ResNet of Wen et al., VGG-Face) and fine-tunes through FER2013 to the small databases
(Tables 9-11: "FER2013 model"). The table runner follows that chain whenever the models are
present (nets.pretrained says which model serves which net and where tools/fetch_pretrained.py
keeps them):
- a run with no parent run of its own -- a FER2013 cell, and every cross-database training --
  starts from the face model of its net;
- a cell of CK+, Oulu-CASIA or MMI fine-tunes from the FER2013 run of the same net and variant
  (experiments/paper/tables.py, ``finetune_from``), which itself started from the face model.
A cross-database training starts from the face model, not from the FER2013 run: it is tested
on FER2013's images, which that run trained on (docs/recipe.md).

``--init`` chooses: ``auto`` (default) uses the face models when every net of the table that has
one finds it, and random weights when none does; a table that would start some nets from a
face model and others, which have one, from random weights is refused (``InitError``), as is
``face`` when a model is missing. Nets without a public model (toy, cnn48) start from random
weights either way, and each table says where each of its cells started.
"""
from pathlib import Path

from experiments.running.options import OptionError
from nets.pretrained import MODELS, default_dest

INITS = ("auto", "face", "random")


class InitError(OptionError):
    """A table whose runs cannot start from the weights asked for; the message says what to do."""


def public_model(net):
    """(registry name, PretrainedModel) of the face model that initialises ``net``, or None."""
    return next(((name, model) for name, model in MODELS.items() if model.net == net), None)


def face_model_file(net, folder=None):
    """The caffemodel that initialises ``net`` in ``folder`` (default: where tools/fetch_pretrained.py
    puts it), or None when the net has no public model."""
    found = public_model(net)
    if found is None:
        return None
    return Path(folder or default_dest()) / found[1].caffemodel


def plan(nets, init="auto", folder=None):
    """{net: the face model's path, or None for random weights} for the table's ``nets``."""
    if init not in INITS:
        raise InitError(f"--init {init!r}: choose one of {', '.join(INITS)}")
    nets = sorted(set(nets))
    if init == "random":
        return {net: None for net in nets}
    files = {net: face_model_file(net, folder) for net in nets}
    with_model = {net: path for net, path in files.items() if path is not None}
    present = {net: path for net, path in with_model.items() if path.is_file()}
    missing = sorted(set(with_model) - set(present))
    fetch = "; ".join(f"python tools/fetch_pretrained.py {public_model(net)[0]}" for net in missing)
    if init == "face":
        without = [net for net in nets if files[net] is None]
        if without:
            raise InitError(f"--init face: the {', '.join(without)} net(s) have no public face model to "
                            "start from; use --init auto (they start from random weights) or other --nets")
        if missing:
            raise InitError(f"--init face: no face model for {', '.join(missing)} at "
                            f"{', '.join(str(with_model[n]) for n in missing)}; fetch it ({fetch}) or "
                            "use --init random")
    elif present and missing:
        raise InitError(
            f"this table would start {', '.join(sorted(present))} from its face model but "
            f"{', '.join(missing)} from random weights ({', '.join(str(with_model[n]) for n in missing)} "
            f"is missing): fetch it ({fetch}), run the nets apart with --nets, or pass --init random")
    return {net: str(present[net]) if net in present else None for net in nets}
