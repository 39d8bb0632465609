"""The study YAML schema: shipped studies validate, presets resolve, bad files fail clearly."""
from __future__ import annotations

import pytest
import yaml

from npcai.errors import NpcaiError
from npcai.studies.runner import plan_study
from npcai.studies.schema import STUDY_DIR, Study, list_studies, load_study


def test_five_studies_are_shipped():
    assert list_studies() == ["decision", "metastasis", "peritumoral", "prepost", "residual"]


@pytest.mark.parametrize("name", ["metastasis", "peritumoral", "prepost", "residual"])
def test_shipped_study_validates_with_both_presets(name):
    study = load_study(name)
    assert {"paper", "fast"} <= set(study.presets)
    for preset in study.presets:
        resolved = study.resolve(preset)
        steps = resolved.steps()
        assert steps and len({s.key for s in steps}) == len(steps)
        assert resolved.preset_description
    fast = study.resolve("fast").study
    assert fast.training.size <= 96 and not fast.training.pretrained


def test_paper_presets_follow_the_seeds():
    p000 = load_study("peritumoral").resolve("paper").study
    assert p000.backbones == ["inception_resnet_v2", "ecaresnet50t", "efficientnet_b3", "efficientnet_b0"]
    assert (p000.training.optimizer, p000.training.lr, p000.training.batch_size, p000.training.epochs) == \
        ("sgd", 0.001, 32, 40)
    assert [r.variant for r in p000.rois] == ["original", "segmented", "expand:5px", "expand:10px",
                                              "expand:20px", "expand:40px", "expand:60px"]
    assert p000.training.patience >= p000.training.epochs     # the seed: no early stopping
    p001 = load_study("prepost").resolve("paper").study
    assert (p001.backbones, p001.training.optimizer, p001.training.lr) == (["inception_resnet_v2"], "adam", 1e-4)
    assert [e.rois for e in p001.ensembles] == [["pre", "post"]]
    p002 = load_study("residual").resolve("paper").study
    assert p002.units == ["image", "patient"] and [s.where for s in p002.subsets] == \
        ['treatment == "CCRT"', 'treatment == "IC+CCRT"']
    assert len(p002.backbones) == 4 and p002.training.optimizer == "sgd"
    p003 = load_study("metastasis").resolve("paper").study
    assert len(p003.rois) == 8 and {r.variant for r in p003.rois} == {"segmented", "expand:3mm"}
    assert {r.slices for r in p003.rois} == {"tumour", "max-area:3"}
    assert len(plan_study(load_study("metastasis").resolve("paper"))) == 32


def test_overrides_apply_after_the_preset():
    r = load_study("metastasis").resolve("fast", backbones=["resnet18", "resnet34"], epochs=2)
    assert r.study.backbones == ["resnet18", "resnet34"] and r.study.training.epochs == 2
    assert len(r.steps()) == 16
    # each subset's steps come first-run-first so the first run defines the split
    assert r.steps()[0].roi.name == "both-intra"


def test_roi_cache_names_differ_between_presets():
    s = load_study("peritumoral")
    fast, paper = s.resolve("fast"), s.resolve("paper")
    roi_f = next(r for r in fast.study.rois if r.name == "expand20")
    roi_p = next(r for r in paper.study.rois if r.name == "expand20")
    assert fast.roi_cache_name(roi_f) != paper.roi_cache_name(roi_p)
    assert roi_f.variant == "expand:10px" and roi_p.variant == "expand:20px"


def _write(tmp_path, data) -> str:
    p = tmp_path / "study.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def _minimal():
    return {"name": "mine", "title": "Mine", "endpoint": "pfs-median",
            "rois": [{"name": "seg", "variant": "segmented"}], "backbones": ["resnet18"]}


def test_a_user_yaml_runs_through_the_same_schema(tmp_path):
    s = load_study(_write(tmp_path, _minimal()))
    assert isinstance(s, Study) and s.resolve(None).steps()[0].key == "all__seg__resnet18__image"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["rois"][0].update(variant="expand:20"), "rois.0.variant"),
    (lambda d: d.update(backbones=[]), "backbones"),
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d["rois"].append({"name": "seg", "variant": "original"}), "duplicate ROI"),
    (lambda d: d.update(delong=[["seg", "nope"]]), "unknown ROI"),
    (lambda d: d["rois"][0].update(slices="biggest"), "slices"),
])
def test_bad_study_files_fail_with_one_line(tmp_path, change, message):
    data = _minimal()
    change(data)
    with pytest.raises(NpcaiError) as exc:
        load_study(_write(tmp_path, data))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_study_and_preset(tmp_path):
    with pytest.raises(NpcaiError, match="unknown; choose one of"):
        load_study("nonexistent")
    with pytest.raises(NpcaiError, match="no preset 'turbo'"):
        load_study("peritumoral").resolve("turbo")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(NpcaiError, match="not valid YAML"):
        load_study(bad)


def test_study_dir_has_only_valid_yaml():
    from npcai.decision.design import is_decision_study, load_decision_study

    for path in STUDY_DIR.glob("*.yaml"):
        load = load_decision_study if is_decision_study(path) else load_study
        assert load(path).name == path.stem


def test_cli_list_and_dry_run(cli):
    r = cli("study", "list")
    assert r.code == 0 and "peritumoral" in r.stdout and "28 / 7" in r.stdout
    r = cli("study", "run", "residual", "--preset", "fast", "--dry-run")
    assert r.code == 0 and "4 runs" in r.stdout
    r = cli("study", "run", "nope", "--dry-run")
    assert r.code == 2 and "unknown" in r.stderr


# ---------------------------------------------------------------- one schema for training options
def test_every_train_config_option_is_settable_from_the_yaml(tmp_path):
    """training: and split: are TrainConfig's own fields (names, defaults); the remaining
    fields are the study's structure. Every non-default value reaches the run's TrainConfig."""
    import dataclasses

    from npcai.models.train import TrainConfig
    from npcai.studies.backend import train_config
    from npcai.studies.schema import SPLIT_FIELDS, STUDY_OWNED, SplitSpec, TrainingSpec

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(TrainingSpec.model_fields) | set(SplitSpec.model_fields) | set(STUDY_OWNED) == set(fields)
    assert not set(TrainingSpec.model_fields) & set(SplitSpec.model_fields)
    for name, f in fields.items():          # one set of defaults: TrainConfig's
        spec = TrainingSpec.model_fields.get(name) or SplitSpec.model_fields.get(name)
        if spec is not None:
            assert spec.default == f.default, name
    training = {"pretrained": False, "weights": None, "optimizer": "rmsprop", "lr": 0.003, "weight_decay": 0.01,
                "schedule": "cosine", "ema": 0.95,
                "batch_size": 7, "epochs": 3, "patience": 2, "dropout": 0.25, "members": 2, "size": 48,
                "aggregate": "max",
                "pooling": "attention", "bag_size": 5, "augment": False, "num_workers": 1,
                "task": "binary", "stacked": True, "normalise": "histogram", "accelerator": "cpu", "devices": 1,
                "precision": "bf16-mixed", "strategy": "ddp", "num_nodes": 1}
    split = {"seed": 4, "val_fraction": 0.3, "test_fraction": 0.25, "test_where": 'centre != "C1"',
             "folds": None, "fold_seed": 2, "stratify_centre": False}
    assert set(training) == set(TrainingSpec.model_fields) and set(split) == set(SPLIT_FIELDS)
    data = dict(_minimal(), training=training, split=split, units=["image"])    # members 2: the image unit
    s = load_study(_write(tmp_path, data)).resolve(None)
    step = s.steps()[0]
    cfg = train_config(tmp_path, roi="cache", endpoint=s.study.endpoint, backbone=step.backbone, unit=step.unit,
                       training=s.study.training, split=s.study.split, split_from=None,
                       where=step.subset.where, weights=None)
    for k, v in {**training, **split}.items():
        assert getattr(cfg, k) == v, k
    assert (cfg.unit, cfg.backbone, cfg.roi) == ("image", "resnet18", "cache")
    assert s.roi_params(s.study.rois[0])["size"] == 48


@pytest.mark.parametrize("block, change, message", [
    ("training", {"colour": "red"}, "colour"),
    ("training", {"lr": -1}, "lr"),
    ("training", {"pooling": "median"}, "pooling"),
    ("training", {"optimizer": "lbfgs"}, "optimizer"),
    ("split", {"folds": 1}, "folds"),
    ("split", {"folds": 5, "test_where": 'centre != "C1"'}, "test filter"),
    ("split", {"shuffle": True}, "shuffle"),
])
def test_unknown_or_invalid_training_options_are_refused(tmp_path, block, change, message):
    data = _minimal()
    data[block] = change
    with pytest.raises(NpcaiError) as exc:
        load_study(_write(tmp_path, data))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_preset_options_are_checked_too(tmp_path):
    data = dict(_minimal(), presets={"x": {"training": {"bagsize": 3}}})
    with pytest.raises(NpcaiError, match="bagsize"):
        load_study(_write(tmp_path, data))
    data = dict(_minimal(), presets={"x": {"split": {"fold": 3}}})
    with pytest.raises(NpcaiError, match="fold"):
        load_study(_write(tmp_path, data))


def test_fast_cv_preset_and_overrides():
    s = load_study("peritumoral")
    cv, fast = s.resolve("fast-cv").study, s.resolve("fast").study
    assert cv.split.folds == 5 and fast.split.folds is None
    assert cv.training == fast.training and [r.variant for r in cv.rois] == [r.variant for r in fast.rois]
    r = s.resolve("fast", folds=3, rois=["segmented", "expand20"], endpoint="distant-metastasis",
                  sequences=["T1c", "T2"], size=48)
    assert r.study.split.folds == 3 and [x.name for x in r.study.rois] == ["segmented", "expand20"]
    assert r.study.endpoint == "distant-metastasis" and all(x.sequences == ["T1c", "T2"] for x in r.study.rois)
    assert r.study.delong == [["expand20", "segmented"]] or r.study.delong == [("expand20", "segmented")]
    with pytest.raises(NpcaiError, match="no ROI dataset 'nope'"):
        s.resolve("fast", rois=["nope"])


# ---------------------------------------------------------------- a dataset's own training options
def _two_datasets(**seg_training):
    return dict(_minimal(), training={"size": 64},
                rois=[{"name": "orig", "variant": "original"},
                      {"name": "seg", "variant": "segmented", "training": seg_training}])


def test_a_dataset_can_have_its_own_training_options(tmp_path):
    """A crop can train at 96 px with a weight average while the whole slice keeps 64 px: the
    dataset's options reach its ROI cache and its runs' TrainConfig, and no other dataset's."""
    from npcai.studies.backend import train_config

    r = load_study(_write(tmp_path, _two_datasets(size=96, ema=0.99))).resolve(None)
    orig, seg = r.study.rois
    assert (r.training(orig).size, r.training(orig).ema) == (64, 0.0)
    assert (r.training(seg).size, r.training(seg).ema) == (96, 0.99)
    assert r.training(seg).lr == r.study.training.lr                # the rest comes from the study's block
    assert (r.roi_params(orig)["size"], r.roi_params(seg)["size"]) == (64, 96)
    assert "-64px-" in r.roi_cache_name(orig) and "-96px-" in r.roi_cache_name(seg)
    assert plan_study(r)["size"].tolist() == [64, 96]               # what --dry-run shows
    cfg = train_config(tmp_path, roi="cache", endpoint="pfs-median", backbone="resnet18", unit="image",
                       training=r.training(seg), split=r.study.split, split_from=None, where=None, weights=None)
    assert (cfg.size, cfg.ema) == (96, 0.99)


def test_an_option_given_to_the_run_holds_for_every_dataset(tmp_path):
    r = load_study(_write(tmp_path, _two_datasets(size=96, ema=0.99))).resolve(None, size=48, epochs=2)
    assert {r.training(x).size for x in r.study.rois} == {48}
    assert {r.training(x).epochs for x in r.study.rois} == {2}
    assert r.training(r.study.rois[1]).ema == 0.99                  # not given: the dataset's own stays


def test_members_given_to_the_run_make_every_run_a_deep_ensemble(tmp_path):
    """`npcai study run --members 3`: every dataset's runs, its own options kept, reach TrainConfig
    with members 3 (and so a new step hash); a study with a patient unit refuses in one line."""
    from npcai.studies.backend import train_config

    r = load_study(_write(tmp_path, _two_datasets(members=2, ema=0.99))).resolve(None)
    assert [r.training(x).members for x in r.study.rois] == [1, 2]
    r = load_study(_write(tmp_path, _two_datasets(members=2, ema=0.99))).resolve(None, members=3)
    assert [r.training(x).members for x in r.study.rois] == [3, 3]
    cfg = train_config(tmp_path, roi="cache", endpoint="pfs-median", backbone="resnet18", unit="image",
                       training=r.training(r.study.rois[1]), split=r.study.split, split_from=None, where=None,
                       weights=None)
    assert (cfg.members, cfg.ema) == (3, 0.99)
    with pytest.raises(NpcaiError, match="members 3: a deep ensemble is built for the image unit") as exc:
        load_study("residual").resolve("fast", members=3)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("seg_training, message", [
    ({"colour": "red"}, "colour"),
    ({"lr": -1}, "rois seg: training: "),
    ({"devices": 2}, "devices 2"),
])
def test_a_datasets_bad_training_option_names_the_dataset(tmp_path, seg_training, message):
    with pytest.raises(NpcaiError) as exc:
        load_study(_write(tmp_path, _two_datasets(**seg_training)))
    assert message in str(exc.value) and "\n" not in str(exc.value)
