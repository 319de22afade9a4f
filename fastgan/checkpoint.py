"""The run folder: what `python -m fastgan.train` writes, and what training and `python -m fastgan.eval` read back.

A run folder holds
    config.json                     the settings of the run (and the device it ran on)
    metrics.jsonl                   one JSON line per logged step and per finished epoch
    checkpoint.json                 the last finished epoch: the config, the epoch, the RNG state, the optimisers'
                                    plain numbers, how many lines of metrics.jsonl belong to it, and the name and
                                    SHA-256 of its tensor file:
    checkpoint-epoch-NNN-<sha>.safetensors
                                    every array: G.<name> and D.<name> (parameters and batch-norm buffers),
                                    opt_g.<i>.<key> and opt_d.<i>.<key> (the moment buffers of the i-th parameter),
                                    fixed_noise (the noise of the sample grids) and, for a conditional run,
                                    fixed_labels (the digit requested of each of them)
    real_samples.png, fake_samples_epoch_NNN.png, losses.png, quality.json/.txt, mnist_fid.png, parzen.json

Nothing in a checkpoint can run code: a safetensors file is raw arrays behind a JSON header, the rest is JSON, and
loading never unpickles. The pickled checkpoint.pkl of older versions is refused; `python -m fastgan.checkpoint
convert RUN_DIR --trust` converts one, the only place where fastgan unpickles, and only when told to trust the file.

A checkpoint is written in an order that a kill at any instant cannot break: the tensors go to a new file (named
after the epoch and its checksum), then checkpoint.json is replaced in one rename (the commit: it names the new
file and its SHA-256), then the previous tensor file is deleted. Before the commit checkpoint.json still names the
previous, complete tensor file; after it, the new one. `remove_stale_files` clears what a killed write left behind.

Loading checks everything before anything is used: every expected key, shapes that fit the model the config names
(the model is built from the config and compared parameter by parameter), dtypes, finite values, optimiser settings
the optimiser accepts, an RNG state the generator accepts. Each problem is one CheckpointError line naming the file.
Saving runs the same checks first, so a state that could not be loaded is never written.
"""
import argparse
import hashlib
import json
import os
import re
import sys
from collections import OrderedDict

import numpy as np
import safetensors
import safetensors.numpy

from fastgan.models import MODELS, NUM_CLASSES, build_gan, recipe_for
from fastgan.random import isolated_rng
from fastgan.utils.atomic import atomic_write, leftover_temporary_files

FORMAT, VERSION = "fastgan-checkpoint", 1
CHECKPOINT = "checkpoint.json"
LEGACY_CHECKPOINT = "checkpoint.pkl"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
TENSOR_FILE = re.compile(r"checkpoint-epoch-\d{3,}-[0-9a-f]{16}\.safetensors")
# the files that show a folder holds a run, and every file a training run writes
RUN_MARKERS = (CHECKPOINT, LEGACY_CHECKPOINT, METRICS, CONFIG)
TRAINING_FILES = re.compile(r"config\.json|metrics\.jsonl|checkpoint\.json|checkpoint\.pkl|" + TENSOR_FILE.pattern +
                            r"|real_samples\.png|fake_samples_epoch_\d+\.png|losses\.png|quality\.(json|txt)"
                            r"|mnist_fid\.png")
EVALUATION_FILES = ("parzen.json",)  # estimates of a checkpoint: stale once the run is replaced
EVALUATION_SAMPLES = re.compile(r"samples(_digit_\d)?\.png")  # python -m fastgan.eval sample's grids: stale too
# what a checkpoint's state holds: the arrays of the two players, their optimisers, and the plain values
PLAYERS, OPTIMIZERS = ("G", "D"), ("opt_g", "opt_d")
STATE_KEYS = ("epoch", "config", "rng", "metrics_lines", "fixed_noise") + PLAYERS + OPTIMIZERS
DTYPES = ("float32", "float64")  # config["dtype"] (default float32): the precision of every tensor


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the one-line message names the file, the problem and what to do."""


def legacy_message(run_dir):
    return (f"{os.path.join(run_dir, LEGACY_CHECKPOINT)} is a pickled checkpoint of an older fastgan; it is not "
            f"read, because loading a pickle can execute any code the file contains. If you trust where it came "
            f"from, convert it once with: python -m fastgan.checkpoint convert {run_dir} --trust")


# --- checking a state --------------------------------------------------------------------------------------------

def _fail(where, message):
    raise CheckpointError(f"{where}: {message}")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _shape_text(shape):
    """A shape as Python prints a tuple, with N for an axis of any length."""
    dims = ["N" if d is None else str(d) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def _check_array(where, name, value, shape, dtype, model=None):
    """`value` must be an ndarray of `shape` (None: any length on that axis) and `dtype`, every element finite."""
    if not isinstance(value, np.ndarray):
        _fail(where, f"{name} is {type(value).__name__}, not an array")
    if value.dtype != dtype:
        _fail(where, f"{name} has dtype {value.dtype}, the run's tensors are {dtype}")
    if len(value.shape) != len(shape) or any(e is not None and s != e for s, e in zip(value.shape, shape)):
        by = f"model {model!r} expects" if model else "its parameter has"
        hint = "; a checkpoint of another model?" if model else ""
        _fail(where, f"{name} has shape {_shape_text(value.shape)}, {by} {_shape_text(shape)}{hint}")
    if not np.isfinite(value).all():
        _fail(where, f"{name} holds NaN or infinite values (the run had diverged); use an earlier checkpoint")


def _check_config(where, config):
    if not isinstance(config, dict):
        _fail(where, f"config is {type(config).__name__}, not a dict of settings")
    if config.get("model") not in MODELS:
        _fail(where, f"config names model {config.get('model')!r}, not a model fastgan knows ({sorted(MODELS)})")
    if not (_is_int(config.get("nz")) and config["nz"] >= 1):
        _fail(where, f"config has nz = {config.get('nz')!r}, not a positive integer")
    if config.get("noise") not in (None, "normal", "uniform"):
        _fail(where, f"config has noise = {config['noise']!r}, not 'normal' or 'uniform'")
    if config.get("dtype", "float32") not in DTYPES:
        _fail(where, f"config has dtype = {config['dtype']!r}, not one of {DTYPES}")


def _check_player(where, key, saved, module, model, nz, dtype):
    expected = OrderedDict(list(module.named_parameters()) + list(module.named_buffers()))
    if not isinstance(saved, dict):
        _fail(where, f"{key} is {type(saved).__name__}, not a dict of arrays")
    missing, unexpected = [n for n in expected if n not in saved], [n for n in saved if n not in expected]
    if missing or unexpected:
        _fail(where, f"the {key} tensors do not fit model {model!r} (nz = {nz}): missing {missing[:4]}"
                     f"{' ...' if len(missing) > 4 else ''}, unexpected {unexpected[:4]}"
                     f"{' ...' if len(unexpected) > 4 else ''}; a checkpoint of another model?")
    for name, t in expected.items():
        _check_array(where, f"{key}.{name}", saved[name], t.shape, dtype, model)


def _check_optimizer(where, key, saved, params, recipe, dtype):
    if not (isinstance(saved, dict) and {"lr", "hyper", "state"} <= set(saved) and isinstance(saved["hyper"], dict)
            and isinstance(saved["state"], list)):
        _fail(where, f"{key} is not an optimiser state (a dict with lr, hyper and state)")
    kind = type(recipe.make_optimizer(params, recipe.lr))
    try:  # the optimiser's own checks: a finite lr > 0, betas in [0, 1), known hyper-parameters
        kind(params, lr=saved["lr"], **saved["hyper"])
    except (TypeError, ValueError) as err:
        _fail(where, f"{key} holds settings {kind.__name__} does not accept ({err})")
    if len(saved["state"]) != len(params):
        _fail(where, f"{key} has the state of {len(saved['state'])} parameters, the model has {len(params)}")
    full = set(kind.STATE_ARRAYS) | set(kind.STATE_NUMBERS)
    for i, (state, p) in enumerate(zip(saved["state"], params)):
        if not isinstance(state, dict) or (state and set(state) != full):
            _fail(where, f"{key} state {i} has {sorted(state) if isinstance(state, dict) else state!r}; "
                         f"{kind.__name__} keeps {sorted(full)} (or nothing, before the first update)")
        for name in kind.STATE_NUMBERS if state else ():
            if not (_is_int(state[name]) and state[name] >= 1):
                _fail(where, f"{key} state {i} has {name} = {state[name]!r}, not a positive integer")
        for name in kind.STATE_ARRAYS if state else ():
            _check_array(where, f"{key}.{i}.{name}", state[name], p.shape, dtype)


def _check_fixed_labels(where, config, state):
    """A conditional run keeps the digit requested of every fixed noise vector; an unconditional one keeps none."""
    labels = state.get("fixed_labels")
    if not config.get("conditional"):
        if labels is not None:
            _fail(where, "fixed_labels belong to a conditional run, and its config names none (conditional)")
        return
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu" or labels.shape != \
            (len(state["fixed_noise"]),):
        _fail(where, f"a conditional run needs fixed_labels, one integer class per fixed noise vector "
                     f"({len(state['fixed_noise'])}), got {getattr(labels, 'dtype', type(labels).__name__)} of shape "
                     f"{_shape_text(getattr(labels, 'shape', ()) or (0,))}")
    if labels.size and not (0 <= labels.min() and labels.max() < NUM_CLASSES):
        _fail(where, f"fixed_labels must lie in [0, {NUM_CLASSES}), got values from {labels.min()} to {labels.max()}")


def validate_state(state, where="checkpoint"):
    """Raise CheckpointError (one line, starting with `where`) unless `state` is a complete, finite checkpoint of the
    model its config names. `state` holds STATE_KEYS: G and D as {name: array}, the optimisers' state_dict()s,
    fixed_noise, the config, the epoch, the RNG state and the count of metrics lines."""
    if not isinstance(state, dict):
        _fail(where, f"a checkpoint is a dict of {STATE_KEYS}, not {type(state).__name__}")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        _fail(where, f"missing {', '.join(missing)}; it is not a complete fastgan checkpoint")
    for key in ("epoch", "metrics_lines"):
        if not (_is_int(state[key]) and state[key] >= 0):
            _fail(where, f"{key} = {state[key]!r}, not a count (an integer >= 0)")
    config = state["config"]
    _check_config(where, config)
    model, nz, dtype = config["model"], config["nz"], np.dtype(config.get("dtype", "float32"))
    recipe = recipe_for(config)
    # the noise first: its shape holds nz, so a config with an absurd nz fails here, before a model that size is built
    noise_shape = (None, nz, 1, 1) if recipe.noise_shape == "map" else (None, nz)
    _check_array(where, "fixed_noise", state["fixed_noise"], noise_shape, dtype, model)
    _check_fixed_labels(where, config, state)
    with isolated_rng():  # building a model draws its initial weights: the caller's random stream must not move
        try:  # the architecture the config names: widths, channels and the toolbox's options
            G, D = build_gan(config)
        except (TypeError, ValueError) as err:
            _fail(where, f"config names an architecture fastgan cannot build ({err})")
    for key, module in zip(PLAYERS, (G, D)):
        _check_player(where, key, state[key], module, model, nz, dtype)
    for key, module in zip(OPTIMIZERS, (G, D)):
        _check_optimizer(where, key, state[key], module.parameters(), recipe, dtype)
    try:
        np.random.default_rng().bit_generator.state = state["rng"]
    except (TypeError, ValueError, KeyError) as err:
        _fail(where, f"rng is not a state of fastgan's random generator ({type(err).__name__}: {err})")


# --- writing -------------------------------------------------------------------------------------------------------

def _plain(value):
    """`value` with NumPy scalars as Python numbers and tuples as lists: what json.dump writes exactly."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _split(state):
    """(tensors for the safetensors file, the JSON record) of a checkpoint state."""
    tensors = {f"{key}.{name}": np.ascontiguousarray(a) for key in PLAYERS for name, a in state[key].items()}
    tensors["fixed_noise"] = np.ascontiguousarray(state["fixed_noise"])
    if state.get("fixed_labels") is not None:
        tensors["fixed_labels"] = np.ascontiguousarray(state["fixed_labels"], dtype=np.int64)
    optimizers = {}
    for key in OPTIMIZERS:
        saved, numbers = state[key], []
        for i, entry in enumerate(saved["state"]):
            numbers.append({k: v for k, v in entry.items() if not isinstance(v, np.ndarray)})
            tensors.update({f"{key}.{i}.{k}": np.ascontiguousarray(v) for k, v in entry.items()
                            if isinstance(v, np.ndarray)})
        optimizers[key] = {"lr": saved["lr"], "hyper": saved["hyper"], "state": numbers}
    record = {"format": FORMAT, "version": VERSION, "epoch": state["epoch"], "metrics_lines": state["metrics_lines"],
              "config": state["config"], "rng": state["rng"], "optimizers": optimizers}
    return tensors, _plain(record)


def save_checkpoint(run_dir, state):
    """Write `state` (see validate_state) as RUN_DIR's checkpoint, atomically; the previous one stays readable until
    the new one is complete. CheckpointError, and nothing written, if the state is not a valid checkpoint."""
    where = f"checkpoint for {run_dir}"
    validate_state(state, where)
    tensors, record = _split(state)
    blob = safetensors.numpy.save(tensors)
    digest = hashlib.sha256(blob).hexdigest()
    name = f"checkpoint-epoch-{state['epoch']:03d}-{digest[:16]}.safetensors"
    try:  # both files are made in memory first: what cannot be stored fails before anything is written
        text = json.dumps({**record, "tensors": name, "sha256": digest}, indent=1, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        _fail(where, f"its settings cannot be stored as JSON ({err})")
    with atomic_write(os.path.join(run_dir, name)) as f:
        f.write(blob)
    with atomic_write(os.path.join(run_dir, CHECKPOINT), "w") as f:  # the commit
        f.write(text)
    for old in _tensor_files(run_dir):
        if old != name:
            os.remove(os.path.join(run_dir, old))


# --- reading -------------------------------------------------------------------------------------------------------

def _tensor_files(run_dir):
    return sorted(f for f in os.listdir(run_dir) if TENSOR_FILE.fullmatch(f))


def _no_constant(name):
    raise ValueError(f"{name} is not a number a checkpoint may hold")


def _read_record(path):
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f, parse_constant=_no_constant)
    except (OSError, ValueError) as err:  # ValueError: bad JSON, bad UTF-8, NaN/Infinity
        _fail(path, f"unreadable ({err}); restore the file, or start a new run")
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        _fail(path, f"not a fastgan checkpoint (no \"format\": \"{FORMAT}\")")
    if record.get("version") != VERSION:
        _fail(path, f"checkpoint format version {record.get('version')!r}; this fastgan reads version {VERSION}")
    name = record.get("tensors")
    if not (isinstance(name, str) and TENSOR_FILE.fullmatch(name) and isinstance(record.get("sha256"), str)):
        _fail(path, "does not name its tensor file (checkpoint-epoch-NNN-<sha>.safetensors) and its SHA-256")
    optimizers = record.get("optimizers")
    if not (isinstance(optimizers, dict) and all(isinstance(optimizers.get(k), dict)
                                                  and isinstance(optimizers[k].get("state"), list)
                                                  and all(isinstance(s, dict) for s in optimizers[k]["state"])
                                                  for k in OPTIMIZERS)):
        _fail(path, f"optimizers must hold {' and '.join(OPTIMIZERS)}, each with a list of per-parameter states")
    return record


def _merge(path, record, tensors):
    """The checkpoint state of a JSON record and the arrays of its tensor file."""
    state = {k: record[k] for k in ("epoch", "config", "rng", "metrics_lines") if k in record}
    state.update({key: OrderedDict() for key in PLAYERS})
    for key in OPTIMIZERS:
        saved = record["optimizers"][key]
        state[key] = {**saved, "state": [dict(s) for s in saved["state"]]}
    unexpected = []
    for name, array in tensors.items():
        head, _, rest = name.partition(".")
        index, _, entry = rest.partition(".")
        if name in ("fixed_noise", "fixed_labels"):
            state[name] = array
        elif head in PLAYERS and rest:
            state[head][rest] = array
        elif head in OPTIMIZERS and index.isdigit() and int(index) < len(state[head]["state"]) and entry \
                and entry not in state[head]["state"][int(index)]:
            state[head]["state"][int(index)][entry] = array
        else:
            unexpected.append(name)
    if unexpected:
        _fail(path, f"its tensor file holds tensors no checkpoint has: {sorted(unexpected)[:4]}")
    return state


def load_checkpoint(run_dir):
    """The checkpoint state of RUN_DIR (see validate_state: arrays as NumPy arrays), fully checked.

    CheckpointError if there is none, if it is the pickle of an older version (never read), or if anything in it
    is missing, damaged, or does not fit the model its config names.
    """
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.isfile(path):
        if os.path.isfile(os.path.join(run_dir, LEGACY_CHECKPOINT)):
            raise CheckpointError(legacy_message(run_dir))
        raise CheckpointError(f"no checkpoint in {run_dir!r} (expected {path})")
    record = _read_record(path)
    tensor_path = os.path.join(run_dir, record["tensors"])
    try:
        with open(tensor_path, "rb") as f:
            blob = f.read()
    except OSError as err:
        _fail(path, f"its tensor file cannot be read ({err}); restore it, or start a new run")
    if hashlib.sha256(blob).hexdigest() != record["sha256"]:
        _fail(path, f"{record['tensors']} does not have the SHA-256 the checkpoint records: the file was changed or "
                    "damaged")
    try:
        tensors = safetensors.numpy.load(blob)
    except (safetensors.SafetensorError, KeyError, ValueError, TypeError) as err:  # KeyError: a dtype NumPy lacks
        _fail(path, f"its tensor file {record['tensors']} is unreadable ({type(err).__name__}: {err})")
    state = _merge(path, record, tensors)
    validate_state(state, path)
    return state


# --- the folder ----------------------------------------------------------------------------------------------------

def run_markers(run_dir):
    """The files in RUN_DIR that show it holds a run (empty if none, or if the folder does not exist)."""
    return [name for name in RUN_MARKERS if os.path.exists(os.path.join(run_dir, name))]


def remove_stale_files(run_dir):
    """Remove what killed writes left in RUN_DIR: temporary files of the run's files, and tensor files that a
    readable checkpoint.json does not name. Returns the names removed."""
    removed = [path for path, final in leftover_temporary_files(run_dir) if TRAINING_FILES.fullmatch(final)]
    try:
        keep = _read_record(os.path.join(run_dir, CHECKPOINT))["tensors"]
        removed += [os.path.join(run_dir, name) for name in _tensor_files(run_dir) if name != keep]
    except CheckpointError:
        pass  # no readable checkpoint.json: its tensor files stay (the next checkpoint written removes them)
    for path in removed:
        os.remove(path)
    return [os.path.basename(p) for p in removed]


def remove_run_files(run_dir):
    """Delete every file a training run (and the evaluation of its checkpoint) wrote in RUN_DIR, and nothing else
    (for --overwrite). Returns the names removed."""
    removed = sorted(name for name in os.listdir(run_dir) if os.path.isfile(os.path.join(run_dir, name))
                     and (TRAINING_FILES.fullmatch(name) or name in EVALUATION_FILES
                          or EVALUATION_SAMPLES.fullmatch(name)))
    removed += [os.path.basename(path) for path, final in leftover_temporary_files(run_dir)
                if TRAINING_FILES.fullmatch(final)]
    for name in removed:
        os.remove(os.path.join(run_dir, name))
    return removed


# --- converting a checkpoint of an older version ---------------------------------------------------------------------

def convert_legacy(run_dir):
    """Read RUN_DIR/checkpoint.pkl (UNPICKLING IT: call this only for a file you trust) and write it as checkpoint.json
    and its tensor file. checkpoint.pkl is left as it was. Returns the epoch of the checkpoint."""
    import pickle  # noqa: S403 - the only unpickling in fastgan, behind `convert --trust`

    path = os.path.join(run_dir, LEGACY_CHECKPOINT)
    if not os.path.isfile(path):
        raise CheckpointError(f"no {LEGACY_CHECKPOINT} in {run_dir!r}: nothing to convert")
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)  # noqa: S301 - the user vouched for this file (--trust)
    except Exception as err:  # noqa: BLE001 - any unreadable pickle is the same problem for the user
        raise CheckpointError(f"{path} is unreadable ({type(err).__name__}: {err})") from None
    save_checkpoint(run_dir, state)
    return state["epoch"]


def build_parser():
    p = argparse.ArgumentParser(prog="python -m fastgan.checkpoint",
                                description="Checkpoints of fastgan runs (checkpoint.json + a safetensors file).")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="convert the pickled checkpoint.pkl of an older fastgan (unpickles it!)")
    c.add_argument("run_dir", metavar="RUN_DIR", help="a run folder holding checkpoint.pkl")
    c.add_argument("--trust", action="store_true",
                   help="required: loading a pickle can execute any code in it; pass --trust only for a file you "
                        "wrote yourself or otherwise trust")
    v = sub.add_parser("check", help="load and check a run folder's checkpoint (no pickle is ever read)")
    v.add_argument("run_dir", metavar="RUN_DIR")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            if not args.trust:
                parser.error(f"convert unpickles {os.path.join(args.run_dir, LEGACY_CHECKPOINT)}, and loading a "
                             "pickle can execute any code it contains: pass --trust if you trust this file")
            epoch = convert_legacy(args.run_dir)
            print(f"converted {os.path.join(args.run_dir, LEGACY_CHECKPOINT)} (epoch {epoch}) to "
                  f"{os.path.join(args.run_dir, CHECKPOINT)}; the pickle is no longer needed and may be deleted")
        else:
            state = load_checkpoint(args.run_dir)
            print(f"{os.path.join(args.run_dir, CHECKPOINT)}: a valid checkpoint of model {state['config']['model']!r}"
                  f" after epoch {state['epoch']}")
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
