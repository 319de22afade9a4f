"""The run folder's checkpoint (fastgan/checkpoint.py): safetensors + JSON that round-trip exactly, a one-line error
for every way a checkpoint can be wrong, no code run from a pickle, explicit conversion of old pickles, and writes
that a kill at any point cannot break."""
import contextlib
import copy
import hashlib
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import safetensors.numpy

import fastgan
from fastgan import checkpoint, train
from fastgan.checkpoint import CheckpointError, load_checkpoint, remove_stale_files, save_checkpoint
from fastgan.eval import __main__ as eval_cli
from fastgan.models import MODELS, recipe_for


def make_state(model="dcgan", dtype="float32", epoch=1):
    """A checkpoint state as train.py writes one, with every optimiser buffer filled (one update of zeros)."""
    config = {"model": model, "nz": 100, "dtype": dtype, "seed": 0}
    recipe = recipe_for(config)
    fastgan.manual_seed(0)
    G, D = MODELS[model](100)
    G.astype(dtype), D.astype(dtype)
    opt_g, opt_d = (recipe.make_optimizer(m.parameters(), recipe.lr) for m in (G, D))
    for module, opt in ((G, opt_g), (D, opt_d)):
        for p in module.parameters():
            p.grad = fastgan.zeros(*p.shape, dtype=p.dtype)
        opt.step()
    return {"epoch": epoch, "config": config, "G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(), "rng": fastgan.get_rng_state(), "metrics_lines": 7,
            "fixed_noise": recipe.sample_noise(64, 100).numpy().astype(dtype)}


@pytest.fixture(scope="module")
def dcgan_state():
    return make_state()


@pytest.fixture
def state(dcgan_state):
    return copy.deepcopy(dcgan_state)


@pytest.fixture(scope="module")
def dcgan_folder(dcgan_state, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    save_checkpoint(str(folder), dcgan_state)
    return folder


@pytest.fixture
def saved(dcgan_folder, tmp_path):
    """A folder holding the checkpoint of dcgan_state, to damage."""
    shutil.copytree(dcgan_folder, tmp_path / "run")
    return tmp_path / "run"


def assert_same_state(a, b):
    assert (a["epoch"], a["config"], a["rng"], a["metrics_lines"]) == (b["epoch"], b["config"], b["rng"],
                                                                        b["metrics_lines"])
    np.testing.assert_array_equal(a["fixed_noise"], b["fixed_noise"])
    for key in ("G", "D"):
        assert sorted(a[key]) == sorted(b[key])
        for name in a[key]:
            assert a[key][name].dtype == b[key][name].dtype
            np.testing.assert_array_equal(a[key][name], b[key][name], err_msg=f"{key}.{name}")
    for key in ("opt_g", "opt_d"):
        assert a[key]["lr"] == b[key]["lr"]
        assert {k: list(v) if isinstance(v, tuple) else v for k, v in a[key]["hyper"].items()} == b[key]["hyper"]
        for sa, sb in zip(a[key]["state"], b[key]["state"], strict=True):
            assert sorted(sa) == sorted(sb)
            for name in sa:
                np.testing.assert_array_equal(sa[name], sb[name], err_msg=f"{key}.{name}")


# --- the format ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, dtype", [("dcgan", "float32"), ("dcgan", "float64"), ("mlp", "float32")])
def test_roundtrip_is_exact_and_holds_no_pickle(tmp_path, model, dtype):
    state = make_state(model, dtype)
    save_checkpoint(str(tmp_path), state)
    files = sorted(os.listdir(tmp_path))
    assert checkpoint.TENSOR_FILE.fullmatch(files[0]) and files[0].startswith("checkpoint-epoch-001-")
    assert files[1:] == ["checkpoint.json"]
    loaded = load_checkpoint(str(tmp_path))
    assert_same_state(state, loaded)
    # the arrays are plain safetensors (readable by any safetensors reader), the rest plain JSON
    tensors = safetensors.numpy.load_file(str(tmp_path / files[0]))
    np.testing.assert_array_equal(tensors["G.0.weight"], state["G"]["0.weight"])
    assert sorted(k for k in tensors if k.startswith("opt_")) == sorted(
        f"{key}.{i}.{name}" for key in ("opt_g", "opt_d") for i, s in enumerate(state[key]["state"])
        for name in s if isinstance(s[name], np.ndarray))
    record = json.load(open(tmp_path / "checkpoint.json"))
    assert record["sha256"] == hashlib.sha256((tmp_path / files[0]).read_bytes()).hexdigest()
    # what is loaded drives the model and the optimiser as before
    G, _ = MODELS[model](100)
    G.load_state_dict(loaded["G"])
    opt = recipe_for(loaded["config"]).make_optimizer(G.parameters(), 0.1)
    opt.load_state_dict(loaded["opt_g"])
    assert getattr(opt, "betas", ()) == tuple(loaded["opt_g"]["hyper"].get("betas", ()))


def test_a_new_checkpoint_replaces_the_old_one(tmp_path, state):
    save_checkpoint(str(tmp_path), state)
    state["epoch"], state["G"]["0.weight"] = 2, state["G"]["0.weight"] + 1
    save_checkpoint(str(tmp_path), state)
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".safetensors")]) == 1
    assert load_checkpoint(str(tmp_path))["epoch"] == 2


# --- one clear line for every way a checkpoint can be wrong --------------------------------------------------------

def rewrite(run_dir, record=None, tensors=None):
    """Rewrite RUN_DIR's checkpoint with edit functions applied to its JSON record and its tensors (the checksum is
    made to fit, so that each edit reaches the check it is meant for)."""
    path = os.path.join(run_dir, "checkpoint.json")
    saved = json.load(open(path))
    tensor_path = os.path.join(run_dir, saved["tensors"])
    arrays = dict(safetensors.numpy.load_file(tensor_path))
    if tensors:
        tensors(arrays)
        blob = safetensors.numpy.save(arrays)
        open(tensor_path, "wb").write(blob)
        saved["sha256"] = hashlib.sha256(blob).hexdigest()
    if record:
        record(saved)
    json.dump(saved, open(path, "w"))


def drop_state(tensors, prefix):
    for name in [n for n in tensors if n.startswith(prefix)]:
        del tensors[name]


def set_in(keys, value):
    def edit(record):
        d = record
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


BAD_CHECKPOINTS = {  # what is wrong: (edit of the JSON record, edit of the tensors, the message it must give)
    "missing key": (lambda r: r.pop("rng"), None, r"missing rng; it is not a complete fastgan checkpoint"),
    "missing tensor": (None, lambda t: t.pop("G.0.weight"),
                       r"the G tensors do not fit model 'dcgan' \(nz = 100\): missing \['0.weight'\], unexpected \[\]"),
    "unexpected tensor": (None, lambda t: t.update({"G.extra": np.zeros(3, np.float32)}),
                          r"the G tensors do not fit model 'dcgan' .* unexpected \['extra'\]"),
    "stray tensor": (None, lambda t: t.update({"payload": np.zeros(3, np.float32)}),
                     r"holds tensors no checkpoint has: \['payload'\]"),
    "other model": (set_in(["config", "model"], "mlp"), None,
                    r"fixed_noise has shape \(64, 100, 1, 1\), model 'mlp' expects \(N, 100\); a checkpoint of "
                    r"another model\?"),
    "other nz": (set_in(["config", "nz"], 64), None, r"fixed_noise has shape \(64, 100, 1, 1\), model 'dcgan' "
                                                      r"expects \(N, 64, 1, 1\)"),
    "unknown model": (set_in(["config", "model"], "wgan"), None, r"config names model 'wgan', not a model fastgan"),
    "wrong shape": (None, lambda t: t.update({"D.0.weight": t["D.0.weight"][:, :, :2]}),
                    r"D.0.weight has shape \(64, 1, 2, 4\), model 'dcgan' expects \(64, 1, 4, 4\)"),
    "wrong dtype": (None, lambda t: t.update({"G.0.weight": t["G.0.weight"].astype(np.float64)}),
                    r"G.0.weight has dtype float64, the run's tensors are float32"),
    "integer tensor": (None, lambda t: t.update({"fixed_noise": t["fixed_noise"].astype(np.int32)}),
                       r"fixed_noise has dtype int32, the run's tensors are float32"),
    "NaN weight": (None, lambda t: t["D.0.weight"].__setitem__((0, 0, 0, 0), np.nan),
                   r"D.0.weight holds NaN or infinite values \(the run had diverged\)"),
    "inf buffer": (None, lambda t: t["G.1.running_var"].__setitem__(3, np.inf), r"G.1.running_var holds NaN"),
    "NaN moment": (None, lambda t: t["opt_g.0.exp_avg_sq"].__setitem__((0, 0, 0, 0), np.nan),
                   r"opt_g.0.exp_avg_sq holds NaN"),
    "moment shape": (None, lambda t: t.update({"opt_d.1.exp_avg": np.zeros(3, np.float32)}),
                     r"opt_d.1.exp_avg has shape \(3,\), its parameter has \(128, 64, 4, 4\)"),
    "missing moment": (None, lambda t: t.pop("opt_d.2.exp_avg"),
                       r"opt_d state 2 has \['exp_avg_sq', 'step'\]; Adam keeps \['exp_avg', 'exp_avg_sq', 'step'\]"),
    "negative lr": (set_in(["optimizers", "opt_g", "lr"], -1), None,
                    r"opt_g holds settings Adam does not accept \(Adam: learning rate must be a finite number > 0"),
    "beta outside [0, 1)": (set_in(["optimizers", "opt_d", "hyper", "betas"], [1.5, 0.999]), None,
                            r"Adam: betas must be two numbers in \[0, 1\), got \[1.5, 0.999\]"),
    "unknown setting": (set_in(["optimizers", "opt_d", "hyper", "momentum"], 0.9), None,
                        r"opt_d holds settings Adam does not accept .*momentum"),
    "step zero": (set_in(["optimizers", "opt_g", "state", 0, "step"], 0), None,
                  r"opt_g state 0 has step = 0, not a positive integer"),
    "parameter count": (lambda r: r["optimizers"]["opt_g"]["state"].pop(), lambda t: drop_state(t, "opt_g.6."),
                        r"opt_g has the state of 6 parameters, the model has 7"),
    "state of no parameter": (None, lambda t: t.update({"opt_g.7.exp_avg": np.zeros(3, np.float32)}),
                              r"holds tensors no checkpoint has: \['opt_g.7.exp_avg'\]"),
    "bad RNG state": (set_in(["rng", "bit_generator"], "MT19937"), None, r"rng is not a state of fastgan's random"),
    "negative epoch": (set_in(["epoch"], -1), None, r"epoch = -1, not a count"),
    "newer format": (set_in(["version"], 2), None, r"checkpoint format version 2; this fastgan reads version 1"),
    "not a checkpoint": (set_in(["format"], "something else"), None, r"not a fastgan checkpoint"),
    "tensor file outside": (set_in(["tensors"], "../checkpoint-epoch-001-0123456789abcdef.safetensors"), None,
                            r"does not name its tensor file"),
    "tensor file changed": (set_in(["sha256"], "0" * 64), None,
                            r"does not have the SHA-256 the checkpoint records: the file was changed or damaged"),
    "tensor file missing": (set_in(["tensors"], "checkpoint-epoch-001-0123456789abcdef.safetensors"), None,
                            r"its tensor file cannot be read \(.*No such file"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_every_bad_checkpoint_is_one_clear_error(saved, case):
    edit_record, edit_tensors, message = BAD_CHECKPOINTS[case]
    rewrite(str(saved), edit_record, edit_tensors)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_checkpoint(str(saved))
    assert str(caught.value).startswith(str(saved / "checkpoint.json")) and "\n" not in str(caught.value)


@pytest.mark.parametrize("content, message", [(b"{not json", r"checkpoint.json: unreadable \(Expecting"),
                                              (b'{"lr": NaN}', r"unreadable \(NaN is not a number"),
                                              (b"\xff\xfe", r"checkpoint.json: unreadable"),
                                              (b"[1, 2]", r"not a fastgan checkpoint")])
def test_a_damaged_json_file_is_one_clear_error(saved, content, message):
    (saved / "checkpoint.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(str(saved))


def test_a_damaged_tensor_file_is_one_clear_error(saved):
    record = json.load(open(saved / "checkpoint.json"))
    garbage = b"not a safetensors file"
    (saved / record["tensors"]).write_bytes(garbage)
    record["sha256"] = hashlib.sha256(garbage).hexdigest()  # damaged before its checksum was taken
    json.dump(record, open(saved / "checkpoint.json", "w"))
    with pytest.raises(CheckpointError, match=r"its tensor file checkpoint-epoch-001-\w+.safetensors is unreadable"):
        load_checkpoint(str(saved))


def test_no_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"no checkpoint in '.*' \(expected .*checkpoint.json\)"):
        load_checkpoint(str(tmp_path))


@pytest.mark.parametrize("change, message", [
    (lambda s: s["G"]["0.weight"].__setitem__((0, 0, 0, 0), np.nan), r"checkpoint for .*: G.0.weight holds NaN"),
    (lambda s: s["config"].update(limit={1, 2}), r"checkpoint for .*: its settings cannot be stored as JSON \(Object "
                                                 r"of type set"),
    (lambda s: s["opt_g"].update(lr=float("inf")), r"checkpoint for .*: opt_g holds settings Adam does not accept"),
])
def test_a_state_that_could_not_be_loaded_is_never_written(tmp_path, state, change, message):
    save_checkpoint(str(tmp_path), state)
    before = {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)}
    state["epoch"] = 2
    change(state)
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(str(tmp_path), state)
    assert {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)} == before


def test_validating_leaves_the_random_stream_alone(state):
    fastgan.manual_seed(5)
    checkpoint.validate_state(state)  # builds the model, whose initialisation draws numbers
    drawn = fastgan.randn(3).numpy()
    fastgan.manual_seed(5)
    np.testing.assert_array_equal(drawn, fastgan.randn(3).numpy())


# --- pickles: never loaded, except when converted on purpose -----------------------------------------------------

class RunsCode:
    """Unpickling this creates a folder: proof that loading the pickle ran code of the file's choosing."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture
def crafted_run(tmp_path):
    run_dir, marker = tmp_path / "run", str(tmp_path / "code-ran")
    run_dir.mkdir()
    with open(run_dir / "checkpoint.pkl", "wb") as f:
        pickle.dump({"epoch": 1, "config": {"model": "mlp", "nz": 100}, "G": RunsCode(marker)}, f)
    json.dump({"dataset": "mnist", "model": "mlp", "device": "cpu"}, open(run_dir / "config.json", "w"))
    return str(run_dir), marker


@pytest.mark.parametrize("command", [["train", "mnist", "--resume"], ["eval", "parzen"], ["eval", "quality"],
                                     ["checkpoint", "check"]])
def test_a_crafted_pickle_is_refused_and_runs_no_code(crafted_run, capsys, command):
    run_dir, marker = crafted_run
    cli = {"train": train, "eval": eval_cli, "checkpoint": checkpoint}[command[0]]
    assert cli.main(command[1:] + [run_dir, *(["--no-progress"] if command[0] != "checkpoint" else [])]) == 1
    err = capsys.readouterr().err
    assert "loading a pickle can execute any code the file contains" in err
    assert f"python -m fastgan.checkpoint convert {run_dir} --trust" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(marker), "the pickle was loaded"


def test_converting_a_pickle_needs_trust(crafted_run, capsys):
    run_dir, marker = crafted_run
    with pytest.raises(SystemExit) as exit_:
        checkpoint.main(["convert", run_dir])
    assert exit_.value.code == 2
    assert "loading a pickle can execute any code it contains: pass --trust" in capsys.readouterr().err
    assert not os.path.exists(marker)
    # --trust is the user's word that the file is safe, and the pickle is then loaded (here: the code runs), but what
    # it holds is still checked before anything is written
    assert checkpoint.main(["convert", run_dir, "--trust"]) == 1
    assert os.path.exists(marker)
    assert "missing rng" in capsys.readouterr().err and not os.path.exists(os.path.join(run_dir, "checkpoint.json"))


def test_convert_with_trust_turns_an_old_checkpoint_into_the_new_one(tmp_path, state, capsys):
    old = {**state, "opt_g": {**state["opt_g"], "hyper": dict(state["opt_g"]["hyper"])}}
    with open(tmp_path / "checkpoint.pkl", "wb") as f:  # as fastgan's earlier versions wrote it
        pickle.dump(old, f, protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError, match=r"checkpoint.pkl is a pickled checkpoint of an older fastgan"):
        load_checkpoint(str(tmp_path))
    assert checkpoint.main(["convert", str(tmp_path), "--trust"]) == 0
    assert "(epoch 1) to" in capsys.readouterr().out
    assert_same_state(state, load_checkpoint(str(tmp_path)))
    assert os.path.exists(tmp_path / "checkpoint.pkl")  # the user's file is left alone
    assert checkpoint.main(["check", str(tmp_path)]) == 0
    assert "a valid checkpoint of model 'dcgan' after epoch 1" in capsys.readouterr().out


# --- writes that a kill cannot break -------------------------------------------------------------------------------

def fail_on(monkeypatch, function, when, error=OSError("disk full")):
    """Make checkpoint's os.<function> raise `error` when when(*args) is true (a write killed at that point)."""
    real = getattr(os, function)

    def failing(*args, **kwargs):
        if when(*args):
            raise error
        return real(*args, **kwargs)
    monkeypatch.setattr(checkpoint.os, function, failing)


def half_written(final_name):
    """checkpoint.atomic_write, except that writing final_name stops halfway with an error."""
    real = checkpoint.atomic_write

    class HalfFile:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            raise OSError("disk full")

    @contextlib.contextmanager
    def atomic_write(path, *args, **kwargs):
        with real(path, *args, **kwargs) as f:
            yield HalfFile(f) if os.path.basename(path) == final_name else f
    return atomic_write


@pytest.mark.parametrize("killed", ["writing the tensors", "renaming the tensors", "writing the JSON",
                                    "renaming the JSON", "Ctrl-C between the two files"])
def test_a_killed_write_leaves_the_previous_checkpoint(tmp_path, state, monkeypatch, killed):
    save_checkpoint(str(tmp_path), state)
    first = sorted(os.listdir(tmp_path))
    state["epoch"], state["G"]["0.weight"] = 2, state["G"]["0.weight"] * 2
    if killed == "writing the tensors":
        def no_space(tensors):
            raise OSError("disk full")
        monkeypatch.setattr(checkpoint.safetensors.numpy, "save", no_space)
    elif killed == "renaming the tensors":
        fail_on(monkeypatch, "replace", lambda src, dst: dst.endswith(".safetensors"))
    elif killed == "writing the JSON":
        monkeypatch.setattr(checkpoint, "atomic_write", half_written("checkpoint.json"))
    elif killed == "renaming the JSON":
        fail_on(monkeypatch, "replace", lambda src, dst: dst.endswith("checkpoint.json"))
    else:
        fail_on(monkeypatch, "replace", lambda src, dst: dst.endswith("checkpoint.json"), KeyboardInterrupt())
    with pytest.raises((OSError, KeyboardInterrupt)):
        save_checkpoint(str(tmp_path), state)
    monkeypatch.undo()
    loaded = load_checkpoint(str(tmp_path))
    assert loaded["epoch"] == 1 and not np.array_equal(loaded["G"]["0.weight"], state["G"]["0.weight"])
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # atomic_write removed its temporary file
    remove_stale_files(str(tmp_path))  # the new tensor file, if it was complete, names no checkpoint: removed
    assert sorted(os.listdir(tmp_path)) == first


def test_a_kill_after_the_commit_leaves_the_new_checkpoint(tmp_path, state, monkeypatch):
    save_checkpoint(str(tmp_path), state)
    old_tensors = [f for f in os.listdir(tmp_path) if f.endswith(".safetensors")]
    state["epoch"] = 2
    fail_on(monkeypatch, "remove", lambda path: True, KeyboardInterrupt())  # killed before the old file is deleted
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(str(tmp_path), state)
    monkeypatch.undo()
    assert load_checkpoint(str(tmp_path))["epoch"] == 2
    assert remove_stale_files(str(tmp_path)) == old_tensors
    assert load_checkpoint(str(tmp_path))["epoch"] == 2


def test_stale_files_of_killed_writes_are_removed_and_nothing_else(tmp_path, state):
    save_checkpoint(str(tmp_path), state)
    stale = [".checkpoint.json.k3j_x9a2.tmp", ".checkpoint-epoch-002-0123456789abcdef.safetensors.ab12cd34.tmp",
             ".metrics.jsonl.zzzzzzzz.tmp", ".fake_samples_epoch_003.png.a1b2c3d4.tmp",
             "checkpoint-epoch-002-0123456789abcdef.safetensors"]
    others = [".notes.txt.abcdefgh.tmp", "notes.txt", ".metrics.jsonl.tmp", "checkpoint-epoch-2.safetensors"]
    checkpoint_files = set(os.listdir(tmp_path))
    for name in stale + others:
        (tmp_path / name).write_bytes(b"x")
    assert sorted(remove_stale_files(str(tmp_path))) == sorted(stale)
    assert set(os.listdir(tmp_path)) == checkpoint_files | set(others)
    assert load_checkpoint(str(tmp_path))["epoch"] == 1
    # an unreadable checkpoint.json: its tensor files are kept (the user may still repair it), temporary files go
    (tmp_path / "checkpoint.json").write_text("{")
    (tmp_path / ".checkpoint.json.k3j_x9a2.tmp").write_bytes(b"x")
    assert remove_stale_files(str(tmp_path)) == [".checkpoint.json.k3j_x9a2.tmp"]
    assert any(f.startswith("checkpoint-epoch-001") for f in os.listdir(tmp_path))
