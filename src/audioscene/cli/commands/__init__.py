"""The `audioscene` subcommands, one module each: `arguments(sub)` declares the subcommand and its
options (shared groups in `cli/arguments.py`) and `run(args)` calls the library and prints the
result. `COMMANDS` is the one list `build_parser` reads, in `--help` order; a new command is a
module with those two functions and one entry here (or `COMMANDS.append` from outside). Library
modules are imported inside each `run`, so `audioscene tag` does not load the training code."""

from . import (
    demo,
    detect,
    download,
    embed,
    evaluate,
    export_onnx,
    import_panns,
    listen,
    pack,
    plot,
    predict,
    pretrained,
    report,
    sed_eval,
    sed_tune,
    synth,
    synth_embeddings,
    tag,
    train,
    verify,
    view,
)

COMMANDS = [synth, synth_embeddings, train, evaluate, predict, report, tag, embed, export_onnx, view, detect, listen, sed_eval,
            sed_tune, plot, download, pack, verify, demo, pretrained, import_panns]
