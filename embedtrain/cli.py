"""Command line: ``embedtrain train|eval|similar|analogy``.

Every user-facing failure is one line on stderr and exit code 2; Ctrl-C during
training saves the model so far and exits with 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import NoReturn

from embedtrain.errors import (
    EmbedtrainError,
    OutputError,
    OutputInterrupted,
    SettingsError,
    TrainingInterrupted,
)
from embedtrain.settings import OPTIONS, Settings
from embedtrain.signals import signals_set_flag, stop_signals_interrupt

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULTS = Settings()


def _per_head(value: Callable[[type, Settings], float | str], heads: Iterable[str]) -> str:
    """``value`` of each head, heads sharing one named together (help texts)."""
    from embedtrain.heads import HEADS

    grouped: dict[float, list[str]] = {}
    for name in heads:
        grouped.setdefault(value(HEADS[name], Settings(head=name)), []).append(name)
    return "; ".join(
        f"{v if isinstance(v, str) else format(v, 'g')} for {', '.join(names)}"
        for v, names in grouped.items()
    )


def _default_steps(kind: type, settings: Settings) -> str:
    """A head's default ``--step`` for each model, named once where they agree."""
    steps = {model: kind.default_step(model) for model in ("skipgram", "cbow")}
    if len(set(steps.values())) == 1:
        return steps["skipgram"]
    return ", ".join(f"{step} ({model})" for model, step in steps.items())


def _what_heads_say() -> dict[str, str]:
    """The help texts' ``{placeholders}``: what only the head registry knows."""
    from embedtrain.heads import HEADS

    def heads_that(capability: str) -> str:
        return ", ".join(name for name, kind in HEADS.items() if getattr(kind, capability))

    exact = [name for name, kind in HEADS.items() if kind.takes_bias_feature]
    shared = [name for name, kind in HEADS.items() if kind.has_shared_step]
    return {
        "heads": ", ".join(HEADS),
        "lr_by_head": _per_head(lambda kind, s: kind.with_defaults(s).lr, HEADS),
        "bias_by_head": _per_head(lambda kind, s: kind.with_defaults(s).bias_feature, exact),
        "init_norm_by_head": _per_head(lambda kind, s: kind.with_defaults(s).init_norm, HEADS),
        "step_by_head": _per_head(_default_steps, shared),
        "compiled_heads": heads_that("has_compiled_step"),
        "merging_heads": heads_that("merges_by_row"),
    }


def _add_options(parser: argparse.ArgumentParser) -> None:
    """One flag per training option, generated from the Settings fields: their help, type,
    choices and default (:func:`embedtrain.settings.option`). A flag not given is None, so
    that an absent option keeps the default or a resumed model's setting."""
    say = _what_heads_say()
    for spec in OPTIONS:
        about = spec.metadata
        if not about["command_line"]:
            continue
        shown = about["default_text"]
        if shown is None:
            shown = f"{spec.default:,}" if isinstance(spec.default, int) else f"{spec.default}"
        note = f", {about['note']}" if about["note"] else ""
        kind = {"int": int, "float": float, "str": str}[spec.type.split(" | ")[0]]
        parser.add_argument(
            f"--{spec.name.replace('_', '-')}",
            type=kind,
            choices=about["choices"] or None,
            metavar=about["metavar"],
            help=f"{about['help']} (default: {shown}{note})".format(**say),
        )


def _train_parser(commands) -> None:
    from embedtrain.corpus import MAX_BAD_BYTE_SHARE, SHIPPED_CORPUS_NAME, TEXT_CHECK_BYTES
    from embedtrain.heads import HEADS

    d = DEFAULTS
    p = commands.add_parser(
        "train",
        help="train word vectors on a corpus",
        description="Train word vectors. Defaults follow word2vec/gensim (d=100, window 5, "
        f"5 negatives, sample 1e-3, min_count 5, 5 epochs, lr "
        f"{HEADS[d.head].with_defaults(d).lr:g} -> {d.min_lr:g} for the default head).",
    )
    p.add_argument(
        "corpus",
        nargs="?",
        default=None,
        help="text file (.gz/.bz2/.xz read transparently), directory (all files, recursively), "
        f"or - for stdin; one sentence per line (default: the shipped {SHIPPED_CORPUS_NAME})",
    )
    p.add_argument(
        "-o",
        "--output",
        default="vectors.txt",
        help="word vectors: word2vec binary if it ends in .bin, word2vec text otherwise "
        "(default: vectors.txt)",
    )
    _add_options(p)
    p.add_argument(
        "--save-output",
        metavar="PATH",
        help="also write the output vectors, one per word, as fastText's -saveOutput "
        "(word2vec binary if PATH ends in .bin, text otherwise): syn1neg for ns, "
        "W for the exact heads (V U for the factored ones); hs has none",
    )
    p.add_argument(
        "--save-model",
        metavar="PATH",
        help="also save the full model (.npz), from which training can be resumed",
    )
    p.add_argument(
        "--resume",
        metavar="PATH",
        help="continue training the model saved in PATH "
        "(its settings are kept; --epochs may extend the run)",
    )
    p.add_argument(
        "--allow-binary",
        action="store_true",
        help="train on input that does not look like UTF-8 text (NUL bytes, or more than "
        f"{MAX_BAD_BYTE_SHARE:.0%}% undecodable bytes in a file's first "
        f"{TEXT_CHECK_BYTES // 1024} KiB), which is refused by default",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(run=_run_train)


def _options_given(args: argparse.Namespace) -> dict:
    """The training options set on the command line (the rest keep their defaults, or a
    resumed model's settings)."""
    names = [name for name in DEFAULTS.to_dict() if getattr(args, name, None) is not None]
    return {name: getattr(args, name) for name in names}


def _check_distinct_paths(args: argparse.Namespace, corpus_path: str) -> None:
    """Each file written must differ from the others and from the corpus and the resumed
    model, which it would otherwise replace (only --save-model may overwrite --resume)."""
    from embedtrain.corpus import corpus_files

    inputs = {f"corpus file {path}": path for path in corpus_files(corpus_path)}
    inputs["--resume"] = args.resume
    outputs = {
        "-o": args.output,
        "--save-output": args.save_output,
        "--save-model": args.save_model,
    }
    seen: dict[Path, str] = {}
    for name, path in outputs.items():
        if not path:
            continue
        target = Path(path).resolve()
        for source_name, source in inputs.items():
            replaces = source is not None and target == Path(source).resolve()
            if replaces and (name, source_name) != ("--save-model", "--resume"):
                raise OutputError(f"{name} {path} would overwrite {source_name}")
        if target in seen:
            raise OutputError(f"{name} and {seen[target]} name the same file {path}")
        seen[target] = name


def _run_train(args: argparse.Namespace) -> int:
    """Check the outputs, train through the API, write the outputs."""
    from embedtrain.api import resolve_settings, train
    from embedtrain.atomic import check_writable
    from embedtrain.corpus import shipped_corpus

    outputs = {
        "-o": args.output,
        "--save-output": args.save_output,
        "--save-model": args.save_model,
    }
    for flag, path in outputs.items():
        if path == "":
            raise OutputError(f"{flag} names no file (the name is empty)")
    corpus_path = args.corpus if args.corpus is not None else str(shipped_corpus())
    _check_distinct_paths(args, corpus_path)
    for path in outputs.values():
        if path is not None:
            check_writable(path)
    options = _options_given(args)
    settings = resolve_settings(args.resume, **options)
    if args.save_output:
        settings.head_class.require_output_vectors(settings.head)
    partial = args.save_model or _partial_path(args.output)
    check_writable(partial)
    started = time.perf_counter()
    try:
        embeddings = train(
            corpus_path,
            progress=not args.quiet,
            resume=args.resume,
            allow_binary=args.allow_binary,
            settings=settings,
        )
    except TrainingInterrupted as stopped:
        with signals_set_flag():  # a second Ctrl-C must not cut the save short
            stopped.embeddings.save(partial)
        resume = ["embedtrain", "train", corpus_path, "--resume", partial, "-o", args.output]
        for flag, path in (("--save-output", args.save_output), ("--save-model", args.save_model)):
            resume += [flag, path] if path else []
        print(
            f"embedtrain: interrupted; model so far saved to {partial} "
            f"(continue with: {shlex.join(resume)})",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    writes = [(args.output, embeddings.save_vectors)]
    if args.save_output:
        writes.append((args.save_output, embeddings.save_output_vectors))
    if args.save_model:
        writes.append((args.save_model, embeddings.save))
    done: list[str] = []
    with signals_set_flag() as late:  # training is done: finish writing whatever comes
        for path, write in writes:
            try:
                write(path)
            except OutputInterrupted as stopped:
                print(
                    f"embedtrain: {stopped}" + (f"; written: {', '.join(done)}" if done else ""),
                    file=sys.stderr,
                )
                return EXIT_INTERRUPTED
            done.append(str(path))
    written = ", ".join(done)
    if late.is_set():
        print(
            f"embedtrain: interrupted after training; every output was written ({written})",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    elapsed = time.perf_counter() - started
    _say(
        args,
        f"wrote {len(embeddings):,} vectors of dimension {embeddings.vectors.shape[1]} in "
        f"{elapsed:.1f} s: {written}",
    )
    return 0


def _partial_path(output: str) -> str:
    """Where an interrupted run's model goes without --save-model: beside a regular
    output file, else in the working directory."""
    path = Path(output)
    if output == "-" or (path.exists() and not path.is_file()):
        return "embedtrain.partial.npz"
    return str(path.with_name(f"{path.name[:200]}.partial.npz"))  # a legal name, however long


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _eval_parser(commands) -> None:
    from embedtrain.evaluate import DEFAULT_RESTRICT_VOCAB

    p = commands.add_parser(
        "eval",
        help="evaluate word vectors (analogies, word similarity)",
        description="Evaluate with gensim's functions: Google analogies (questions-words.txt), "
        "WordSim-353 and SimLex-999 Spearman (gensim's bundled data), plus any files given.",
    )
    p.add_argument("vectors", help="word2vec text file, or binary if it ends in .bin")
    p.add_argument(
        "--analogies",
        action="append",
        metavar="FILE",
        help="extra analogy questions in questions-words.txt format, evaluated "
        "after gensim's questions-words.txt (repeatable)",
    )
    p.add_argument(
        "--similarity",
        action="append",
        metavar="FILE",
        help="extra word pairs with a human score, tab-separated, evaluated after "
        "gensim's wordsim353.tsv and simlex999.txt (repeatable)",
    )
    p.add_argument(
        "--restrict-vocab",
        type=int,
        default=DEFAULT_RESTRICT_VOCAB,
        help=f"answer analogies among the N most frequent words (default: {DEFAULT_RESTRICT_VOCAB})",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from embedtrain.evaluate import (
        default_analogies,
        default_similarities,
        evaluate,
        format_table,
        load_vectors,
    )

    if args.restrict_vocab <= 0:
        raise SettingsError("--restrict-vocab must be positive")
    scores = evaluate(
        load_vectors(args.vectors),
        analogies=default_analogies() + (args.analogies or []),
        similarities=default_similarities() + (args.similarity or []),
        restrict_vocab=args.restrict_vocab,
    )
    print(
        json.dumps([s.as_dict() for s in scores], indent=2) if args.json else format_table(scores)
    )
    return 0


def _neighbour_parsers(commands) -> None:
    p = commands.add_parser(
        "similar",
        help="nearest neighbours of a word",
        description="Print the words closest to WORD by cosine similarity.",
    )
    p.add_argument("vectors", help="word2vec text file, or binary if it ends in .bin")
    p.add_argument("word")
    p.add_argument("-n", type=int, default=10, help="how many neighbours (default: 10)")
    p.set_defaults(run=_run_similar)
    p = commands.add_parser(
        "analogy",
        help="solve A is to B as C is to ?",
        description="Print the best answers to A:B :: C:? (3CosAdd: B - A + C).",
    )
    p.add_argument("vectors", help="word2vec text file, or binary if it ends in .bin")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("c")
    p.add_argument("-n", type=int, default=10, help="how many answers (default: 10)")
    p.set_defaults(run=_run_analogy)


def _neighbours(args: argparse.Namespace, positive: list[str], negative: list[str]) -> int:
    from embedtrain.evaluate import load_vectors, warn_if_not_finite

    if args.n <= 0:
        raise SettingsError("-n must be positive")
    vectors = load_vectors(args.vectors)
    warn_if_not_finite(vectors.vectors, "they are skipped or score nan")
    for word in positive + negative:
        if word not in vectors.key_to_index:
            raise SettingsError(f"word {word!r} is not in the vocabulary of {args.vectors}")
    for word, similarity in vectors.most_similar(positive=positive, negative=negative, topn=args.n):
        print(f"{word}\t{similarity:.4f}")
    return 0


def _run_similar(args: argparse.Namespace) -> int:
    return _neighbours(args, [args.word], [])


def _run_analogy(args: argparse.Namespace) -> int:
    return _neighbours(args, [args.b, args.c], [args.a])


class _Parser(argparse.ArgumentParser):
    """argparse with the command line's one-line errors (instead of usage, then the error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"embedtrain: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="embedtrain",
        description="Train word embeddings (skip-gram/CBOW with negative sampling, hierarchical "
        "softmax or exact full-vocabulary heads) and evaluate them.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(commands)
    _eval_parser(commands)
    _neighbour_parsers(commands)
    return parser


class _LogLines(logging.Handler):
    """``embedtrain: [warning: ]message`` on stderr, through tqdm so that a progress bar
    on screen is redrawn below the line instead of being cut by it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        level = "warning: " if record.levelno >= logging.WARNING else ""
        tqdm.write(f"embedtrain: {level}{record.getMessage()}", file=sys.stderr)


@contextmanager
def _show_log(quiet: bool) -> Iterator[None]:
    """While inside, the library's log records as ``embedtrain: ...`` lines on stderr
    (warnings only with --quiet); the logger is left as it was after."""
    logger = logging.getLogger("embedtrain")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:] = [_LogLines()]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers[:], level, logger.propagate = saved
        logger.setLevel(level)


def _load_libraries() -> str | None:
    """Import NumPy, Numba and the engine up front: under a tight memory limit (``ulimit
    -v``) loading their shared libraries fails, which deserves one line, not a traceback."""
    try:
        import_module("embedtrain.api")
    except (ImportError, OSError, MemoryError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"cannot load NumPy/Numba ({reason[:160]}); is the memory limit too low?"
    return None


def main(argv: list[str] | None = None) -> int:
    """The command line; Ctrl-C, SIGTERM or SIGHUP at any moment, loading the libraries
    included, end it with one line and exit code 130."""
    try:
        with stop_signals_interrupt():
            return _main(argv)
    except KeyboardInterrupt:
        print("embedtrain: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    failure = _load_libraries()
    if failure:
        print(f"embedtrain: error: {failure}", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _show_log(getattr(args, "quiet", False)):
            return args.run(args)
    except EmbedtrainError as exc:
        print(f"embedtrain: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # stdout's reader left (``| head``): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_USAGE
    except MemoryError:
        print(
            "embedtrain: error: out of memory; try a larger --min-count or smaller --dim",
            file=sys.stderr,
        )
        return EXIT_USAGE
