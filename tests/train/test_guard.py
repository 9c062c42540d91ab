"""The collapse guard (pipeline/train/guard.py, issue 38): what counts as a collapse, what the guard
does about it, and, through the real training stages on the small REAL dataset with one of its
training videos held out for validation, that a forced collapse (an absurd learning rate) is
recorded, survived or stopped, and never leaves weights worse than the best the run has seen."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, deep_update, repo_params
from test_live import read_log
from test_train import CPU, TINY_CFMD, stage_args, tiny_params
from pipeline.models.cfmd.task import CFMDConfig, CFMDTask
from pipeline.params import ParamError, validate_all
from pipeline.train.data import FaceDeblurDataset, training_and_validation_rows
from pipeline.train.ddp import DistEnv
from pipeline.train.guard import CollapseGuard, CollapseSettings, TrainingCollapsed
from pipeline.train.loop import Validation

VALIDATION_VIDEO = "grid-lbax4n"  # a training video of the small run, held out for validation here


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # DVCLive records artifacts only inside a DVC repository


# ------------------------------------------------------------------ decisions, on a task the test makes


class LinearTask:
    """A one-layer 'network' with Adam and a per-epoch scheduler: enough for the guard's actions."""

    def __init__(self, adversarial: bool = True):
        self.net = torch.nn.Linear(2, 2)
        self.modules = {"generator": self.net}
        self.optimizers = {"generator": torch.optim.Adam(self.net.parameters(), lr=1e-3)}
        self.schedulers = {"generator": torch.optim.lr_scheduler.ExponentialLR(self.optimizers["generator"], 0.5)}
        self.adversarial = adversarial

    def take_a_step(self):
        loss = self.net(torch.ones(1, 2)).sum()
        self.optimizers["generator"].zero_grad()
        loss.backward()
        self.optimizers["generator"].step()


def guard_for(task, **settings) -> tuple[CollapseGuard, Validation]:
    validator = Validation(task, [], CPU)  # no items: the gains are given to it (note), not scored
    return CollapseGuard(CollapseSettings(**settings), task, validator), validator


def accuracy(real: float, fake: float) -> dict:
    return {"d_real_acc": torch.tensor(real), "d_fake_acc": torch.tensor(fake)}


def test_a_fall_below_the_best_validation_is_a_collapse():
    task = LinearTask()
    guard, v = guard_for(task, max_drop=1.0)
    v.note(0, 0.0), v.note(100, 0.4)
    assert guard.validated(200, -0.55) is None  # 0.95 dB below the best: within max_drop
    reason = guard.validated(300, -0.7)
    assert reason.startswith("the validation gain fell to -0.70 dB, 1.10 dB below the best (+0.40 dB at step 100")
    assert guard.validated(400, float("nan")) == "the validation gain is nan"


def test_a_pinned_discriminator_is_a_collapse_only_when_asked_and_only_past_the_warm_up():
    task = LinearTask(adversarial=False)
    guard, v = guard_for(task, d_pinned=2)
    v.note(0, 0.0)
    for step in (100, 200, 300):  # the warm-up: the zeros a task reports for D are not accuracies
        guard.observe(accuracy(0.0, 0.0))
        assert guard.validated(step, 0.0) is None
    task.adversarial = True
    guard.observe(accuracy(1.0, 1.0))
    assert guard.validated(400, 0.0) is None  # once
    guard.observe(accuracy(0.5, 0.5)), guard.observe(accuracy(0.5, 0.5))
    assert guard.validated(500, 0.0) is None  # not pinned: the count starts again
    for step in (600, 700):
        guard.observe(accuracy(1.0, 0.99))
        reason = guard.validated(step, 0.0)
    assert reason == "the discriminator's accuracy has been pinned at 0.995 for 2 validations (collapse.d_pinned)"
    off, _ = guard_for(LinearTask(), d_pinned=0)
    off.validator.note(0, 0.0)
    for step in range(5):
        off.observe(accuracy(1.0, 1.0))
        assert off.validated(step, 0.0) is None


def test_retry_restores_the_best_weights_clears_adam_and_lowers_every_lr():
    task = LinearTask()
    guard, v = guard_for(task, lr_factor=0.1, retries=1)
    v.note(0, 0.5)  # keeps these weights
    best = {k: t.clone() for k, t in task.net.state_dict().items()}
    for _ in range(3):
        task.take_a_step()
    assert not torch.equal(task.net.weight, best["weight"])
    guard.act(3, "forced")
    assert all(torch.equal(task.net.state_dict()[k], best[k]) for k in best)
    opt, sched = task.optimizers["generator"], task.schedulers["generator"]
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4) and sched.base_lrs == [pytest.approx(1e-4)]
    assert not opt.state  # Adam's moments of the collapsing run are gone
    assert guard.events == [{"step": 3, "reason": "forced", "action": "retry", "restored_step": 0,
                             "lr": {"generator": pytest.approx(1e-4)}}]
    with pytest.raises(TrainingCollapsed, match=r"collapsed at step 9: again; stopped \(2 collapses \(collapse.retries 1"):
        guard.act(9, "again")
    assert guard.events[-1]["action"] == "stop"


def test_stop_and_no_validation_stop_at_once():
    guard, v = guard_for(LinearTask(), action="stop")
    v.note(0, 0.0)
    with pytest.raises(TrainingCollapsed, match=r"stopped \(collapse.action is stop\); nothing was saved"):
        guard.act(5, "forced")
    blind = CollapseGuard(CollapseSettings(), LinearTask(), None)
    assert not blind.can_recover
    with pytest.raises(TrainingCollapsed, match="no validation video, so no best weights to restore"):
        blind.act(5, "forced")


def test_adversarial_weights_are_kept_only_within_keep_within_of_the_best_gain():
    task = LinearTask(adversarial=False)
    guard, v = guard_for(task, keep_within=0.1)
    gains = iter([0.3, 0.5, 0.35, 0.45, 0.42])
    v.score = lambda: next(gains)  # the gains a run would measure, given
    weights = {}

    def validate(step):
        task.net.weight.data.fill_(step)  # weights that say which step they are from
        weights[step] = task.net.weight.detach().clone()
        return v.validate(step, guard)

    v.step(0), validate(100)  # the warm-up: 0.3, then 0.5 (kept)
    task.adversarial = True
    validate(200)  # 0.35: more than 0.1 below the warm-up's 0.5: not kept
    assert (v.phase_start, v.best_step, v.kept) == (200, 100, "warm-up")
    validate(300), validate(400)  # 0.45 is within 0.1: kept; 0.42 is within but not better
    assert (v.best_step, v.kept, round(v.best_gain, 2), v.peak_gain) == (300, "adversarial", 0.45, 0.5)
    v.restore_best()
    assert torch.equal(task.net.weight, weights[300])


@pytest.mark.parametrize("section, change, message", [
    ("train_cfmd", {"collapse": {"action": "panic"}}, "train_cfmd.collapse.action = 'panic': must be one of retry | stop"),
    ("train_chrysos_gan", {"collapse": {"lr_factor": 2}}, "train_chrysos_gan.collapse.lr_factor = 2.0: must be in (0, 1)"),
    ("train_chrysos_hg", {"collapse": {"max_drop": 0}}, "train_chrysos_hg.collapse.max_drop = 0.0: must be > 0 (dB)"),
    ("train_cfmd", {"collapse": {"keep_within": -1}}, "train_cfmd.collapse.keep_within = -1.0: must be >= 0 (dB)"),
    ("train_cfmd", {"collapse": {"patience": 3}}, "train_cfmd.collapse: unknown keys ['patience']"),
    ("train_cfmd", {"collapse": {"retries": "many"}}, "train_cfmd.collapse: invalid literal"),
])
def test_collapse_settings_out_of_range_are_refused_by_name(section, change, message):
    with pytest.raises(ParamError) as e:
        validate_all(deep_update(repo_params(), {section: change}))
    assert str(e.value).startswith(message)


# ------------------------------------------------------------------ the stages, with a forced collapse


def write_params(tmp_path: Path, section: str, changes: dict) -> dict:
    params = tiny_params()
    for name in ("train_cfmd", "train_chrysos_hg", "train_chrysos_gan"):
        params[name].update(validation_video=VALIDATION_VIDEO, validate_every=1)
    params = deep_update(params, {section: changes})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return params


def run_stage(module, tmp_path, root, out: str):
    return module.main(stage_args(module, tmp_path, root, "--out", str(tmp_path / out)))


ABSURD = {"lr": 10.0, "lr_warmup": 0, "pixel_warmup": 0, "steps": 4,
          "collapse": {"max_drop": 0.5, "lr_factor": 1e-4, "retries": 3}}


def validation_gain_of(weights_path: Path, small_run: Path, params: dict) -> float:
    """The held-out video's gain of the written CFMD-GAN weights, scored as the stage scores it."""
    cfg = CFMDConfig.from_params(params["train_cfmd"])
    task = CFMDTask(cfg, CPU, DistEnv(), None)
    saved = torch.load(weights_path, weights_only=True)
    for name, module in task.modules.items():
        module.load_state_dict(saved["state_dicts"][name])
    _, held = training_and_validation_rows(small_run, cfg.loop.methods, VALIDATION_VIDEO)
    return Validation(task, FaceDeblurDataset(held, small_run, "moment", resolution=cfg.loop.resolution), CPU).score()


def test_a_forced_cfmd_collapse_is_survived_recorded_and_never_leaves_worse_weights(small_run, tmp_path):
    from stages import train_cfmd

    params = write_params(tmp_path, "train_cfmd", ABSURD)
    run_stage(train_cfmd, tmp_path, small_run, "models/cfmd.pt")
    meta = json.loads((tmp_path / "models/train_cfmd.json").read_text())
    events = meta["training"]["collapses"]
    assert events and events[0]["action"] == "retry" and events[0]["step"] <= 2, events
    assert events[0]["reason"].startswith(("a non-finite loss", "the validation gain fell to"))
    assert events[0]["lr"]["generator"] == pytest.approx(10.0 * 1e-4)  # every lr x lr_factor
    log = read_log(tmp_path / "dvclive/train_cfmd")
    assert log["plots"]["collapses"][-1][1] == len(events)
    # the written weights are the ones validation kept; they are within max_drop of the best seen
    validation = meta["training"]["validation"]
    written = validation_gain_of(tmp_path / "models/cfmd.pt", small_run, params)
    assert written == pytest.approx(validation["best_gain"], abs=1e-3)
    assert written >= validation["peak_gain"] - ABSURD["collapse"]["max_drop"]
    assert written >= max(g for s, g in validation["history"]) - ABSURD["collapse"]["max_drop"]


def digests(tmp_path) -> dict[str, str]:
    files = [tmp_path / "models/cfmd.pt", tmp_path / "models/train_cfmd.json", tmp_path / "metrics/train_cfmd.json",
             *sorted((tmp_path / "dvclive/train_cfmd").rglob("*"))]
    return {str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def test_a_collapse_under_action_stop_exits_and_keeps_the_previous_outputs(small_run, tmp_path):
    from stages import train_cfmd

    write_params(tmp_path, "train_cfmd", {})
    run_stage(train_cfmd, tmp_path, small_run, "models/cfmd.pt")
    before = digests(tmp_path)
    write_params(tmp_path, "train_cfmd", {**ABSURD, "collapse": {"action": "stop", "max_drop": 0.5}})
    with pytest.raises(SystemExit, match=r"^train_cfmd: the training collapsed at step \d+: .*stopped \(collapse.action "
                                         r"is stop\); nothing was saved"):
        run_stage(train_cfmd, tmp_path, small_run, "models/cfmd.pt")
    assert digests(tmp_path) == before


def test_a_forced_chrysos_gan_collapse_is_survived_and_recorded(small_run, tmp_path):
    from stages import train_chrysos_gan, train_chrysos_hg

    write_params(tmp_path, "train_chrysos_gan", ABSURD)
    run_stage(train_chrysos_hg, tmp_path, small_run, "models/chrysos_hg.pt")
    train_chrysos_gan.main(stage_args(train_chrysos_gan, tmp_path, small_run, "--out",
                                      str(tmp_path / "models/chrysos_gan.pt"), "--hourglass",
                                      str(tmp_path / "models/chrysos_hg.pt")))
    meta = json.loads((tmp_path / "models/train_chrysos_gan.json").read_text())
    events = meta["training"]["collapses"]
    assert events and events[0]["action"] == "retry", events
    assert set(events[0]["lr"]) == {"generator", "discriminator"}
    assert meta["training"]["completed"]


def test_validation_chooses_among_adversarial_steps_once_the_warm_up_ends(small_run, tmp_path):
    from stages import train_cfmd

    write_params(tmp_path, "train_cfmd", {"pixel_warmup": 2, "steps": 5, "collapse": {"keep_within": 100.0}})
    run_stage(train_cfmd, tmp_path, small_run, "models/cfmd.pt")
    meta = json.loads((tmp_path / "models/train_cfmd.json").read_text())
    validation = meta["training"]["validation"]
    assert validation["phase_start"] == 3  # the first validation past the 2 warm-up steps
    assert validation["best_step"] >= 3 and validation["kept"] == "adversarial"
    assert [s for s, _ in validation["history"]] == [0, 1, 2, 3, 4, 5]
    log = read_log(tmp_path / "dvclive/train_cfmd")
    real = dict(log["plots"]["d_real_acc"])
    assert real[1] == real[2] == 0.0 and all(0.0 <= real[s] <= 1.0 for s in (3, 4, 5))


def test_the_learning_benchmark_scores_the_kept_weights_when_the_guard_stops(small_run):
    """benchmarks/learning.py runs for an hour or more: a stop of the guard ends that model's run
    (recorded), not the benchmark, and what it scores afterwards is what validation kept."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import learning

    params = deep_update(tiny_params(), {"train_cfmd": {**ABSURD, "validation_video": VALIDATION_VIDEO, "validate_every": 1,
                                                        "collapse": {"max_drop": 0.5, "action": "stop"}}})
    task, loop, target, _ = learning.build("cfmd", params, CPU)
    train, held = learning.datasets(small_run, loop, target)
    trainer, clock = learning.Trainer(task, loop, CPU, train, held), learning.Clock()
    trainer.run(clock, steps=20)
    assert trainer.stopped and "stopped (collapse.action is stop)" in trainer.stopped
    assert trainer.guard.events[-1]["action"] == "stop" and trainer.step < 20
    stopped_at, fork = trainer.step, trainer.snapshot(clock)
    trainer.run(clock, steps=40)
    assert trainer.step == stopped_at  # a stopped run trains no further
    trainer.stopped = None
    trainer.restore(fork, clock)
    assert trainer.stopped is not None  # the stop travels with the snapshot (the adversarial fork)
    v = trainer.validator
    with trainer.best():
        assert v.score() == pytest.approx(v.best_gain, abs=1e-3)
    assert v.best_gain >= max(g for _, g in v.history) - 0.5
