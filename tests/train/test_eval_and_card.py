"""Evaluation (train/eval_indi.py) and model-card generation (train/make_model_card.py) on a tiny model."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import make_tiny_net
from helpers import ROOT, evaluate_tiny, smooth_photos, tiny_eval_argv, tiny_repo

from benchmarks import peers
from benchmarks.peers import PEERS_DIR
from train import eval_indi, make_model_card, train_indi


def test_sr4_downscale_box_scores_the_box_input_and_other_tasks_refuse_it(tmp_path, capsys):
    """--downscale box: the input row is the bicubic upscale of block means; an identity model's 1 step returns it."""
    repo, photos = tiny_repo(tmp_path / "repo", "sr4", identity=True), smooth_photos(tmp_path / "photos")
    box = evaluate_tiny(repo, photos, "sr4", "--downscale", "box")
    bicubic = evaluate_tiny(repo, photos, "sr4")
    assert box["setting"] == "downscale_box" and (repo / "eval_downscale_box.json").is_file()
    assert box["one_step"]["psnr"] == pytest.approx(box["table"][0]["psnr"], abs=1e-4)
    assert box["table"][0]["psnr"] != pytest.approx(bicubic["table"][0]["psnr"], abs=0.01)
    with pytest.raises(SystemExit):
        eval_indi.parse_args(["--model", "m", "--task", "denoise", "--data_dir", "d", "--downscale", "box"])
    assert "--downscale is for sr4" in capsys.readouterr().err


def test_denoise_noise_kinds_score_noise_of_the_same_rms_and_other_tasks_refuse_them(tmp_path, capsys):
    """--noise camera / correlated: noise of RMS sigma of another kind, named in the setting, the identity returns it."""
    repo, photos = tiny_repo(tmp_path / "repo", "denoise", identity=True), smooth_photos(tmp_path / "photos")
    white = evaluate_tiny(repo, photos, "denoise", "--sigma", "25")
    rms_psnr = -20 * math.log10(25 / 255)
    for kind in ("camera", "correlated"):
        result = evaluate_tiny(repo, photos, "denoise", "--sigma", "25", "--noise", kind)
        assert result["setting"] == f"sigma25_{kind}" and (repo / f"eval_sigma25_{kind}.json").is_file()
        noisy = result["table"][0]["psnr"]
        assert abs(noisy - rms_psnr) < 1.5 and noisy != pytest.approx(white["table"][0]["psnr"], abs=0.01)
        assert result["one_step"]["psnr"] == pytest.approx(noisy, abs=1e-3)
    with pytest.raises(SystemExit):
        eval_indi.parse_args(["--model", "m", "--task", "jpeg", "--data_dir", "d", "--noise", "camera"])
    assert "--noise is for denoise" in capsys.readouterr().err


def test_sample_variation_needs_two_seeds_unless_it_is_skipped(capsys):
    """--variation_seeds 0 or 1 stopped deep in the pipeline with "image is an empty list"; now the flag is named."""
    base = ["--model", "m", "--task", "defocus_deblur", "--data_dir", "d"]
    for seeds in ("0", "1"):
        with pytest.raises(SystemExit):
            eval_indi.parse_args([*base, "--variation_seeds", seeds])
        assert "--variation_seeds must be at least 2" in capsys.readouterr().err
    assert eval_indi.parse_args([*base, "--variation_seeds", "0", "--variation_images", "0"]).variation_seeds == 0


@pytest.mark.parametrize("task", ["jpeg", "sr4"])
def test_identity_model_one_step_equals_the_input(tmp_path, task):
    # A fresh InDINet is exactly the identity (zero layer scales and output conv): one step returns x_1 = y.
    result = evaluate_tiny(tiny_repo(tmp_path / "repo", task, identity=True), smooth_photos(tmp_path / "photos"), task)
    table = result["table"]
    assert [r["method"] for r in table] == ["bicubic" if task == "sr4" else "degraded input", "InDI", "InDI"]
    assert [r["steps"] for r in table] == [None, 1, 2]
    assert result["one_step"]["psnr"] == pytest.approx(table[0]["psnr"], abs=1e-4)
    per_image = result["per_image_psnr"]  # for paired comparisons: one score per crop, in `images` order
    assert len(per_image["one_step"]) == len(per_image["input"]) == len(result["images"])
    assert np.mean(per_image["one_step"]) == pytest.approx(result["one_step"]["psnr"], abs=1e-3)
    for row in table:
        assert all(math.isfinite(row[k]) for k in ("psnr", "ssim", "lpips", "sharpness", "seconds"))
    for suffix in ("json", "md", "png"):
        assert (tmp_path / "repo" / f"eval_{result['setting']}.{suffix}").is_file()
    assert len((tmp_path / "repo" / f"eval_{result['setting']}.md").read_text().strip().splitlines()) == 2 + len(table)


def test_denoise_setting_extra_eps_and_variation(tmp_path):
    repo = tiny_repo(tmp_path / "repo", "denoise", identity=False, eps=0.05)
    result = evaluate_tiny(repo, smooth_photos(tmp_path / "photos"), "denoise", "--sigma", "25", "--eps", "0")
    assert result["setting"] == "sigma25"
    assert ", 1 thread, torch " in result["machine"]  # --threads 1
    eps_rows = {(r["eps"], r["steps"]) for r in result["table"] if r["method"] == "InDI"}
    assert eps_rows == {(0.05, 1), (0.05, 2), (0.0, 1)}  # other eps values are compared at 1 step
    assert result["variation"]["mean_pixel_std_255"] > 0  # eps > 0: seeds differ
    assert result["recommended_steps"] in (1, 2)


def test_an_evaluation_without_the_variation_measure_says_so(tmp_path, capsys):
    repo = tiny_repo(tmp_path / "repo", "jpeg", identity=False, eps=0.05)
    result = evaluate_tiny(repo, smooth_photos(tmp_path / "photos"), "jpeg", "--variation_images", "0")
    assert result["variation"]["mean_pixel_std_255"] is None
    assert "sample std not measured (--variation_images 0)" in capsys.readouterr().out


def test_model_card_is_generated_from_the_evaluation(tmp_path):
    from huggingface_hub import ModelCard

    repo = tiny_repo(tmp_path / "repo", "jpeg", identity=False, eps=0.02)
    result = evaluate_tiny(repo, smooth_photos(tmp_path / "photos"), "jpeg")
    (repo / "train_info.json").write_text(json.dumps(_train_info("train_indi.py ...", steps=5)))
    make_model_card.main([str(repo), "--hub_org", "someone"])
    card = ModelCard.load(repo / "README.md")
    assert card.data.library_name == "diffusers" and card.data.pipeline_tag == "image-to-image"
    assert {"indi", "jpeg"} <= set(card.data.tags)
    values = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert values["PSNR (q10, 1 step)"] == pytest.approx(result["one_step"]["psnr"], abs=1e-4)
    assert 'InDIPipeline.from_pretrained("someone/indi-jpeg")' in card.text
    assert "Inversion by Direct Iteration" in card.text and "@article{delbracio2023indi" in card.text
    # An untrained tiny model is far below the +0.7 dB JPEG q10 floor: the card says so, with the shortfall.
    miss = 0.7 - result["gain_over_input_db_one_step"]
    assert (
        f"Quality floor for q10: +0.7 dB over the input at 1 step; this model gains "
        f"{result['gain_over_input_db_one_step']:+.2f} dB and **misses it by {miss:.2f} dB**" in card.text
    )
    assert f"Below the quality floor (q10 by {miss:.2f} dB)" in card.text


def test_model_card_details_come_from_the_repo_files(tmp_path):
    """Model details: the parameters of the saved network, its weight file, the install line, the speed.json record
    where there is one, and base_model where train_info.json says the first stages trained another task."""
    from huggingface_hub import ModelCard

    repo = tiny_repo(tmp_path / "indi-motion_deblur", "motion_deblur", identity=False, eps=0.02)
    evaluate_tiny(repo, smooth_photos(tmp_path / "photos"), "motion_deblur")
    (repo / "train_info.json").write_text(json.dumps(_train_info("train_indi.py ...", steps=5)))
    text = make_model_card.build_card(repo, "someone").text
    parameters = sum(p.numel() for p in make_tiny_net().parameters())
    assert f"| Parameters | {parameters / 1e6:.2f} M |" in text
    size = (repo / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert f"| Weights | {size / 1e6:.1f} MB, fp32 safetensors |" in text  # save_pretrained keeps fp32
    assert f"sides padded to a multiple of {make_tiny_net().input_multiple} |" in text
    assert "| Licence | Apache-2.0 |" in text and "[arXiv 2303.11435](https://arxiv.org/abs/2303.11435)" in text
    assert f'# pip install "indi-pipeline @ git+{make_model_card.PROJECT_URL}"' in text
    assert "<project repository>" not in text
    assert "| Speed |" not in text and "Fine-tuned from" not in text  # no speed.json; trained from scratch
    assert ModelCard(text).data.base_model is None

    speed = {"size": 512, "forward_ms": 153.4, "cpu": "Some CPU", "threads": 2, "torch": "2.13.0+cpu"}
    (repo / make_model_card.SPEED_FILE).write_text(json.dumps(speed))
    defocus = _train_info("train_indi.py --task defocus_deblur", steps=5)
    defocus["task"] = "defocus_deblur"
    motion = _train_info("train_indi.py --task motion_deblur --init_from copy", steps=5, base=defocus)
    motion.update(task="motion_deblur")
    (repo / "train_info.json").write_text(json.dumps(motion))
    card = make_model_card.build_card(repo, "someone")
    assert "| Speed | 153 ms per 512×512 forward on Some CPU, 2 threads, torch 2.13.0+cpu (`speed.json`) |" in card.text
    assert card.data.base_model == "someone/indi-defocus_deblur"
    assert (
        "| Fine-tuned from | [someone/indi-defocus_deblur](https://huggingface.co/someone/indi-defocus_deblur) "
        "after its stage 1 |" in card.text
    )
    # The base model's stage is a row of the base model's card: this card's table starts at stage 2.
    training = card.text.split("## Training")[1].split("## Limitations")[0]
    assert "\n| 2 | " in training and "\n| 1 | " not in training
    assert make_model_card.base_model(make_model_card.training_stages(motion), "defocus_deblur") is None

    # A config that does not build the stored network is refused, not described.
    config = json.loads((repo / "unet" / "config.json").read_text())
    (repo / "unet" / "config.json").write_text(json.dumps({**config, "width": 2 * config["width"]}))
    with pytest.raises(ValueError, match="holds .* values, unet/config.json builds"):
        make_model_card.build_card(repo, None)


def test_measure_speed_repeats_runs_until_two_agree(tmp_path, monkeypatch):
    """speed.json: bench runs repeat until two in a row agree within 10 %, and the median of all runs is recorded."""
    from benchmarks import bench

    times = iter([300.0, 200.0, 150.0, 160.0, 999.0])
    calls = []

    def fake_run_bench(**kwargs):
        calls.append(kwargs)
        machine = {"cpu": "Some CPU", "cpu_count": 2, "torch": "2.13.0+cpu", "load_average_start": [0.5, 0.4, 0.3]}
        forward = {"ms": next(times), "best_memory_format": "channels_last"}
        return {"machine": {**machine, "load_average_end": [0.6, 0.4, 0.3]}, "forward": [forward]}

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    monkeypatch.setattr(make_model_card, "cpu_busy_fraction", lambda: 0.05)  # a quiet machine: no waiting
    record = make_model_card.measure_speed(tmp_path / "indi-sr4", log=None)
    assert [run["ms"] for run in record["runs"]] == [300.0, 200.0, 150.0, 160.0]  # 150 and 160: within 10 %
    assert record["forward_ms"] == 180.0 and record["two_runs_agreed_within"] == 0.1
    assert record["cpu"] == "Some CPU" and record["threads"] == 2 and record["size"] == 512
    assert record["runs"][0]["cpu_busy_before"] == 0.05 and record["runs"][0]["load_average_start"] == [0.5, 0.4, 0.3]
    assert all(c["sizes"] == (512,) and c["threads"] == 2 and c["steps"] == 1 for c in calls)
    assert record["command"].startswith("python -m train.make_model_card --measure_speed ")


@pytest.mark.skipif(not (ROOT / "model_cards").is_dir(), reason="no bundled model repos")
def test_every_bundled_card_is_the_card_its_files_make():
    """zoo/verify_zoo.py's card check on the bundled repos, without re-running their evaluations: a card edited by
    hand, or an evaluation file changed without regenerating the card, fails here."""
    from zoo import verify_zoo

    folders = sorted(p for p in (ROOT / "model_cards").iterdir() if (p / "model_index.json").exists())
    assert folders
    assert {folder.name: verify_zoo.card_is_current(folder) for folder in folders} == {f.name: True for f in folders}


def test_grid_scores_crops_around_the_centre_each_with_its_own_seed(tmp_path):
    photos = smooth_photos(tmp_path / "photos", size=96)
    crops = eval_indi.load_clean_images(str(photos), 32, 4, 0, grid=2)
    assert [name for name, _ in crops[:4]] == ["photo0_r0c0", "photo0_r0c1", "photo0_r1c0", "photo0_r1c1"]
    array = np.asarray(PIL.Image.open(photos / "photo0.png").convert("RGB"), dtype=np.float32) / 255.0
    centre = np.transpose(array[16:80, 16:80], (2, 0, 1))  # the 2x2 block of 32 px crops around the centre
    assert np.allclose(crops[0][1][0].numpy(), centre[:, :32, :32])
    assert np.allclose(crops[3][1][0].numpy(), centre[:, 32:, 32:])
    # grid 1 is the single centre crop; crops that do not fit side by side spread over the photo
    assert eval_indi.crop_starts(96, 32, 1) == [32] and eval_indi.crop_starts(40, 32, 2) == [0, 8]
    with pytest.raises(SystemExit, match="--grid"):
        eval_indi.load_clean_images(str(photos), 0, 4, 0, grid=2)

    repo = tiny_repo(tmp_path / "repo", "denoise", identity=False, eps=0.05)
    result = evaluate_tiny(repo, photos, "denoise", "--grid", "2", "--crop", "32")
    assert result["grid"] == 2 and len(result["images"]) == 8
    assert make_model_card.evaluation_crops(result) == "2 held-out photos, 2×2 crops of 32 px each (8 crops)"
    assert (
        make_model_card.evaluation_crops({"grid": 1, "images": ["a"] * 8, "crop": 256})
        == "8 held-out photos (256 px centre crops)"
    )


def test_evaluation_never_restores_with_the_degradation_s_own_noise(tmp_path, monkeypatch):
    """Each crop is degraded from `degradation_generator(seed)` and walked with `manual_seed(seed)`: seeded alike,
    the walk's start noise was the denoising noise itself (correlation 1; the denoiser lost 0.1-0.4 dB)."""
    import torch

    starts = []
    real_restore = eval_indi.restore

    def recording_restore(pipe, pipe_input, steps, strength, seed, eps=None):
        starts.append((pipe_input.clone(), torch.Generator().manual_seed(seed)))
        return real_restore(pipe, pipe_input, steps, strength, seed, eps)

    monkeypatch.setattr(eval_indi, "restore", recording_restore)
    photos = smooth_photos(tmp_path / "photos")
    evaluate_tiny(tiny_repo(tmp_path / "repo", "denoise", identity=True, eps=0.05), photos, "denoise")
    clean = eval_indi.load_clean_images(str(photos), 64, 4, 0)
    for (pipe_input, walk_generator), (_, photo) in zip(starts[::2], clean):  # steps 1 and 2 per photo
        walk_noise = torch.randn(photo.shape, generator=walk_generator)
        corr = np.corrcoef((pipe_input - photo).flatten().numpy(), walk_noise.flatten().numpy())[0, 1]
        assert abs(corr) < 0.05


@pytest.mark.slow
def test_floor_check_repeats_the_one_step_evaluation_over_disjoint_seed_sets(tmp_path):
    from research import floor_check

    photos = smooth_photos(tmp_path / "photos")
    repo = tiny_repo(tmp_path / "repo", "denoise", identity=False, eps=0.05)
    base = ["--model", str(repo), "--task", "denoise", "--data_dir", str(photos), "--crop", "64", "--threads", "1"]
    summary = floor_check.main([*base, "--seed_sets", "3", "--json", str(tmp_path / "floor.json")])
    assert [s["seed"] for s in summary["sets"]] == [0, 2, 4]  # 2 crops per set: seeds 0-1, 2-3, 4-5
    assert summary["setting"] == "sigma50" and summary["crops_per_set"] == 2
    # set 0 is the card's own draw
    card = evaluate_tiny(repo, photos, "denoise", "--eps", "0")
    assert summary["sets"][0]["gain_db"] == pytest.approx(card["gain_over_input_db_one_step"], abs=1e-9)
    gains = [s["gain_db"] for s in summary["sets"]]
    assert len(set(gains)) == 3  # other seeds, other noise
    assert summary["gain_db_mean"] == pytest.approx(np.mean(gains))
    assert summary["gain_db_sem"] == pytest.approx(np.std(gains, ddof=1) / np.sqrt(3))
    assert json.loads((tmp_path / "floor.json").read_text()) == summary
    assert summary["tradeoff_steps"] is None and "lpips_reduction" not in summary["sets"][0]
    # --tradeoff_steps N: the rule's numbers at N steps per set, and the 1-step draws are the same as without it
    walked = floor_check.main([*base, "--seed_sets", "3", "--tradeoff_steps", "2"])
    assert walked["tradeoff_steps"] == 2
    assert [s["gain_db"] for s in walked["sets"]] == pytest.approx(gains, abs=1e-9)
    two = evaluate_tiny(repo, photos, "denoise", "--eps", "0")  # steps 1 and 2, seed 0: the first set's draw
    one_row, two_row = (
        next(r for r in two["table"] if r["method"] == "InDI" and r["eps"] == 0.05 and r["steps"] == n) for n in (1, 2)
    )
    assert walked["sets"][0]["lpips_reduction"] == pytest.approx(1 - two_row["lpips"] / one_row["lpips"], abs=1e-9)
    assert walked["sets"][0]["psnr_drop_db"] == pytest.approx(one_row["psnr"] - two_row["psnr"], abs=1e-9)
    reductions = [s["lpips_reduction"] for s in walked["sets"]]
    assert walked["lpips_reduction_mean"] == pytest.approx(np.mean(reductions))
    assert walked["lpips_reduction_sem"] == pytest.approx(np.std(reductions, ddof=1) / np.sqrt(3))
    with pytest.raises(SystemExit):
        floor_check.main(
            ["--model", str(repo), "--task", "denoise", "--data_dir", str(photos), "--tradeoff_steps", "1"]
        )
    with pytest.raises(SystemExit):
        floor_check.main(["--model", str(repo), "--task", "denoise", "--data_dir", str(photos), "--steps", "2"])


def test_loss_text_names_every_training_loss():
    assert make_model_card.loss_text("psnr") == "PSNR loss (minus each image's PSNR, averaged)"
    assert make_model_card.loss_text(None) == "L1 loss"  # runs recorded before --loss existed trained with L1
    assert {make_model_card.loss_text(name) for name in train_indi.LOSSES} == set(make_model_card.LOSS_TEXT.values())


def test_spacing_text_follows_the_scheduler_config():
    # Equal steps are InDIScheduler's default: the card says nothing; another spacing is stated with its formula.
    assert make_model_card.spacing_text({"timestep_spacing": "uniform"}) == ""
    power = make_model_card.spacing_text({"timestep_spacing": "power", "spacing_power": 2.0})
    assert power.startswith("Inference steps are spaced t_i = (1 - i/N)^2, closer together near t = 0")


def test_trade_off_sentence_says_whether_the_rule_is_met():
    base = {"recommended_steps": 8, "psnr_drop_vs_one_step": 0.6}
    assert make_model_card.trade_off_sentence({**base, "lpips_reduction_vs_one_step": 0.12}).endswith("is met.")
    assert make_model_card.trade_off_sentence({**base, "lpips_reduction_vs_one_step": 0.043}).endswith("is not met.")
    better = make_model_card.trade_off_sentence(
        {**base, "psnr_drop_vs_one_step": -0.37, "lpips_reduction_vs_one_step": 0.012}
    )
    assert (
        better
        == "Recommended 8 steps: LPIPS 1.2 % lower than 1 step, PSNR 0.37 dB higher; the trade-off rule is not met."
    )
    one = make_model_card.trade_off_sentence(
        {"recommended_steps": 1, "psnr_drop_vs_one_step": 0.0, "lpips_reduction_vs_one_step": 0.0}
    )
    assert one.startswith("No step count above 1") and one.endswith("is not met.")


def test_trade_off_sentence_judges_by_the_floor_check_s_draws_at_the_recommended_steps():
    edge = {
        "setting": "default",
        "recommended_steps": 8,
        "psnr_drop_vs_one_step": 0.63,
        "lpips_reduction_vs_one_step": 0.098,
    }

    def draws(mean, sem, drop=0.64, steps=8):
        return {
            **_floor_check(2.5, 0.1),
            "tradeoff_steps": steps,
            "lpips_reduction_mean": mean,
            "lpips_reduction_sem": sem,
            "psnr_drop_db_mean": drop,
        }

    # Judged by the draws' mean (13.7 %), not the table's draw (9.8 %, which the table beside it shows).
    met = make_model_card.trade_off_sentence(edge, draws(0.137, 0.012))
    assert met == (
        "Recommended 8 steps, mean ± s.e. over 8 draws (`floor_check.json`): LPIPS 13.7 ± 1.2 % lower than 1 step, "
        "PSNR 0.64 dB lower; the trade-off rule is met."
    )
    assert make_model_card.trade_off_sentence(edge, draws(0.105, 0.01)).endswith(
        "LPIPS 10.5 ± 1.0 % lower than 1 step, PSNR 0.64 dB lower; the trade-off rule is met only within the noise: "
        "10 % lies within two standard errors of the mean."
    )
    assert make_model_card.trade_off_sentence(edge, draws(0.06, 0.01)).endswith(
        "over 8 draws (`floor_check.json`): LPIPS 6.0 ± 1.0 % lower than 1 step, PSNR 0.64 dB lower; the trade-off "
        "rule is not met."
    )
    assert make_model_card.trade_off_sentence(edge, draws(0.2, 0.01, drop=1.2)).endswith(
        "LPIPS 20.0 ± 1.0 % lower than 1 step, PSNR 1.20 dB lower; the trade-off rule is not met."
    )
    # draws at another step count, or of another setting, leave the table's verdict
    assert make_model_card.trade_off_sentence(edge, draws(0.137, 0.012, steps=4)) == (
        "Recommended 8 steps: LPIPS 9.8 % lower than 1 step, PSNR 0.63 dB lower; the trade-off rule is not met."
    )
    # The card states the rule once, above its evaluations.
    assert make_model_card.TRADE_OFF_RULE == (
        "Trade-off rule: some N > 1 steps lower LPIPS by at least 10 % from 1 step, PSNR within 1 dB."
    )
    assert make_model_card.trade_off_sentence({**edge, "setting": "q30"}, draws(0.137, 0.012)).endswith("is not met.")


def test_floor_sentences_say_met_or_missed_per_setting():
    table = {"model_eps": 0.01, "table": [_row("degraded input", None, 15.0, 0.9), _row("InDI", 1, 29.5, 0.2)]}
    evaluations = [
        {"setting": "sigma50", "gain_over_input_db_one_step": 14.5, **table},
        {"setting": "sigma25", "gain_over_input_db_one_step": 10.0, **table},
        {"setting": "sigma10", "gain_over_input_db_one_step": 3.0, **table},
    ]  # no floor for this setting
    sentences = make_model_card.floor_sentences(evaluations, "denoise")
    assert len(sentences) == 2
    assert (
        sentences[0]
        == "- Quality floor for sigma50: +14.0 dB over the input at 1 step; this model gains +14.50 dB and meets it."
    )
    assert "for sigma25: +11.0 dB" in sentences[1] and "misses it by 1.00 dB" in sentences[1]
    assert make_model_card.floor_limitations(evaluations[:1], "denoise") == []
    assert "sigma25 by 1.00 dB" in make_model_card.floor_limitations(evaluations, "denoise")[0]
    # A task with one setting ("default") names no setting.
    motion = [
        {
            "setting": "default",
            "gain_over_input_db_one_step": 1.25,
            "model_eps": 0.01,
            "table": [_row("degraded input", None, 29.5, 0.25), _row("InDI", 1, 30.75, 0.20)],
        }
    ]
    assert make_model_card.floor_sentences(motion, "motion_deblur") == [
        "- Quality floor: +3.0 dB over the input at 1 step; this model gains +1.25 dB and **misses it by 1.75 dB** "
        "(see Limitations)."
    ]
    assert make_model_card.floor_limitations(motion, "motion_deblur")[0].startswith(
        "- Below the quality floor (by 1.75 dB): published because it beats the input on PSNR and LPIPS at once at 1 "
        "step (`eval_default.json`)"
    )


def _floor_check(mean: float, sem: float | None, first_gain: float = 1.69, setting: str = "default") -> dict:
    return {
        "setting": setting,
        "gain_db_mean": mean,
        "gain_db_sem": sem,
        "seed_sets": 8,
        "crops_per_set": 32,
        "sets": [{"seed": 0, "gain_db": first_gain, "gain_db_eps0": first_gain + 0.3}],
    }


def test_floor_sentences_judge_the_floor_by_the_floor_check_s_mean_and_standard_error():
    """With a floor_check.json the verdict is met / missed / within the noise (two standard errors), not one draw's."""
    defocus = [
        {
            "setting": "default",
            "seed": 0,
            "gain_over_input_db_one_step": 1.69,
            "model_eps": 0.01,
            "table": [_row("degraded input", None, 32.6, 0.20), _row("InDI", 1, 34.3, 0.15)],
        }
    ]

    def sentences(mean, sem, setting="default"):
        check = _floor_check(mean, sem, setting=setting)
        return (
            make_model_card.floor_sentences(defocus, "defocus_deblur", check),
            make_model_card.floor_limitations(defocus, "defocus_deblur", check),
        )

    within, limits = sentences(2.06, 0.13)
    # The gain is the draws' mean ± s.e.; the table's draw (+1.69 dB) is the table's to show.
    assert within[0].startswith(
        "- Quality floor: +2.0 dB over the input at 1 step; this model gains +2.06 ± 0.13 dB (mean ± s.e. over 8 "
        "draws of 32 crops, `floor_check.json`) and "
    )
    assert "at the floor only within the noise" in within[0] and "+1.69" not in within[0]
    assert limits == [
        "- At the quality floor only within the noise of the evaluation (+2.06 ± 0.13 dB against +2.0 dB): published "
        "because it beats the input on PSNR and LPIPS at once at 1 step (`eval_default.json`), until a longer "
        "training run clears the floor by more than the noise."
    ]
    # One draw below the floor does not decide when the mean is clearly above it.
    met, limits = sentences(2.40, 0.13)
    assert met[0].endswith("+2.40 ± 0.13 dB (mean ± s.e. over 8 draws of 32 crops, `floor_check.json`) and meets it.")
    assert limits == []
    missed, limits = sentences(1.10, 0.07)
    assert "**misses it by 0.90 dB**" in missed[0]
    assert limits[0].startswith("- Below the quality floor (by 0.90 dB): published because")
    # A floor check of another setting leaves the single-draw verdict; one set (no standard error) has no noise band.
    other, _ = sentences(2.40, 0.13, setting="sigma25")
    assert (
        other[0] == "- Quality floor: +2.0 dB over the input at 1 step; this model gains +1.69 dB and **misses it by "
        "0.31 dB** (see Limitations)."
    )
    one_set = _floor_check(1.95, None, first_gain=1.95)  # one draw, the table's: no noise band
    assert make_model_card.FloorCheck("default", 2.0, 1.95, one_set).verdict == "missed"
    assert (
        "+1.95 dB (`floor_check.json`: one draw of 32 crops, the table's) and **misses it by 0.05 dB**"
        in make_model_card.floor_sentences(
            [{**defocus[0], "gain_over_input_db_one_step": 1.95}], "defocus_deblur", one_set
        )[0]
    )
    assert make_model_card.verdict_against(2.0, 2.1, 0.06) == "within noise"
    assert make_model_card.verdict_against(2.0, 2.1, 0.04) == "met"


def test_a_floor_check_of_other_weights_or_crops_is_refused(tmp_path):
    evaluation = {"setting": "default", "seed": 0, "gain_over_input_db_one_step": 1.69}
    (tmp_path / "eval_default.json").write_text(json.dumps(evaluation))
    assert make_model_card.load_floor_check(tmp_path, [evaluation]) is None  # no file: single-draw verdicts
    (tmp_path / "floor_check.json").write_text(json.dumps(_floor_check(2.06, 0.13, first_gain=1.689)))
    assert make_model_card.load_floor_check(tmp_path, [evaluation])["gain_db_mean"] == 2.06
    (tmp_path / "floor_check.json").write_text(json.dumps(_floor_check(2.06, 0.13, first_gain=1.75)))
    with pytest.raises(
        ValueError,
        match=r"is stale: its first seed set \(seed 0\) gains \+1.750 dB, "
        r"eval_default.json \(seed 0\) \+1.690 dB",
    ):
        make_model_card.load_floor_check(tmp_path, [evaluation])
    (tmp_path / "floor_check.json").write_text(json.dumps(_floor_check(2.06, 0.13, setting="q30")))
    with pytest.raises(ValueError, match="no eval_q30.json"):
        make_model_card.load_floor_check(tmp_path, [evaluation])


def _row(method: str, steps: int | None, psnr: float, lpips: float, eps: float | None = 0.01) -> dict:
    return {"method": method, "steps": steps, "eps": None if steps is None else eps, "psnr": psnr, "lpips": lpips}


def test_improvement_over_input_says_where_the_model_beats_the_input():
    source = _row("degraded input", None, 29.5, 0.25)
    # PSNR only at 1 step, LPIPS only with more steps; the eps = 0 row (not the model's eps) is left out
    split = {
        "model_eps": 0.01,
        "table": [
            source,
            _row("InDI", 1, 29.8, 0.27),
            _row("InDI", 8, 29.0, 0.19),
            _row("InDI", 1, 30.5, 0.1, eps=0.0),
        ],
    }
    assert make_model_card.improvement_over_input(split) == (
        "it improves on the input, though not on PSNR and LPIPS at the same step count: +0.30 dB PSNR at 1 step(s); "
        "LPIPS 0.190 against 0.250 at 8 steps"
    )
    both = {
        "model_eps": 0.01,
        "table": [source, _row("InDI", 1, 29.8, 0.27), _row("InDI", 2, 29.7, 0.24), _row("InDI", 4, 29.6, 0.22)],
    }
    assert make_model_card.improvement_over_input(both) == "it beats the input on PSNR and LPIPS at once at 2, 4 steps"
    worse = {"model_eps": 0.01, "table": [source, _row("InDI", 1, 29.0, 0.3)]}
    assert make_model_card.improvement_over_input(worse) == "it does not improve on the input"


def _train_info(command: str, steps: int, device: str = "cpu", base: dict | None = None) -> dict:
    return {
        "args": {
            "loss": "l1",
            "learning_rate": 1e-3,
            "lr_warmup_steps": 10,
            "train_batch_size": 4,
            "resolution": 64,
            "ema_max_decay": 0.999,
            "seed": 0,
            "t_sampling": "uniform",
            "eps": None,
        },
        "mixed_precision": "no",
        "global_step": steps,
        "wall_seconds": 12.0 * steps,
        "device": device,
        "images_per_second_median": 3.0,
        "stop_reason": "max_train_steps",
        "command": command,
        "init_from_train_info": base,
    }


def test_model_card_describes_every_training_stage_of_a_fine_tune(tmp_path):
    """A fine-tune's train_info.json nests its base's record: the card lists both runs, first run first."""
    repo = tiny_repo(tmp_path / "repo", "jpeg", identity=False, eps=0.02)
    evaluate_tiny(repo, smooth_photos(tmp_path / "photos"), "jpeg")
    base = _train_info("train/train_zoo.sh /tmp/zoo 7.5, which ran: python train/train_indi.py --seed 0", 40, "GPU X")
    tuned = _train_info("python train/train_indi.py --init_from base --seed 1", 7, "cpu", base=base)
    tuned["args"].update(t_sampling="mixture", t_one_probability=0.25)
    tuned["resumed_from"] = {"checkpoint": "checkpoint-5", "global_step": 5, "optimizer_step": 5}
    (repo / "train_info.json").write_text(json.dumps(tuned))
    make_model_card.main([str(repo)])
    text = (repo / "README.md").read_text()
    # One row per run in the stage table; the exact commands stay in train_info.json, out of the card.
    first = text.index("| 1 | GPU X, 1 of 5 runs | 8.0 | l1 | 0.001 | uniform |")  # old record: train_zoo.sh ran 5
    second = text.index("| 2 | cpu | 1.4 | l1 | 0.001 | t = 1 at 0.25 |")
    assert first < second
    # Step counts and where a run resumed are train_info.json's: a resumed run's minutes count the whole run.
    assert "resumed" not in text and "checkpoint-5" not in text
    assert "Each stage fine-tunes the one before:" in text and "Exact commands: `train_info.json`." in text
    assert "train/train_zoo.sh" not in text and "--init_from base --seed 1" not in text
    assert "(2 stages: 8 min on GPUs, 1 min on CPUs)" in text


def test_stage_row_names_the_gpu_share_and_a_different_task():
    info = _train_info("train/train_indi.py --task defocus_deblur", 30, "GPU Y")
    info.update(task="defocus_deblur", launched_by="ZOO_TASKS=x train/gpu_session.sh OUT 5", concurrent_runs=4)
    info["args"].update(eps=0.01)
    cells = make_model_card.stage_cells(1, info, "motion_deblur")
    assert cells == [
        "1",
        "GPU Y, 1 of 4 runs",
        "6.0",
        "l1",
        "0.001",
        "uniform",
        "0.01",
        "4 × 64 px",
        "defocus_deblur task",
    ]
    # The launcher and the command are train_info.json's to keep: the card points there.
    assert "gpu_session.sh" not in " ".join(cells)
    info.update(concurrent_runs=1, launched_by=None)
    cells = make_model_card.stage_cells(2, info, "defocus_deblur")
    assert cells[1] == "GPU Y" and cells[-1] == ""
    # Without a note in any row, the table has no notes column.
    # One eps in every row: the legend names it, the table has no eps column.
    table = make_model_card.stage_table([info], "defocus_deblur")
    assert table.splitlines() == [
        "| stage | hardware | min | `--loss` | lr | p(t) | batch × crop |",
        "|---|---|---|---|---|---|---|",
        "| 1 | GPU Y | 6.0 | l1 | 0.001 | uniform | 4 × 64 px |",
    ]
    assert "eps (path noise, constant schedule) 0.01 in every row" in make_model_card.training_legend(
        [info], {"noise_schedule": "constant"}
    )
    # Stages that differ in eps keep the column, and the legend only defines it.
    later = _train_info("train/train_indi.py --init_from x", 10, "cpu", base=info)
    later["args"].update(eps=0.02)
    stages = make_model_card.training_stages(later)
    assert make_model_card.stage_table(stages, "defocus_deblur").splitlines()[0].count("| eps |") == 1
    assert "eps: path noise, constant schedule" in make_model_card.training_legend(
        stages, {"noise_schedule": "constant"}
    )
    # From stage 2 on (stage 1 is a base model's, on its own card), one eps again: no column.
    assert "| eps |" not in make_model_card.stage_table(stages, "defocus_deblur", first=2)


def test_stage_notes_say_when_a_stage_grew_its_base_network():
    base = _train_info("train/train_indi.py --encoder_blocks 1 1 1 1", 40, "cpu")
    base["args"].update(encoder_blocks=[1, 1, 1, 1])  # the defaults, spelled out: not a growth of anything
    command = "train/train_indi.py --init_from base --encoder_blocks 1 1 2 4 --middle_blocks 4"
    info = _train_info(command, 30, "cpu", base=base)
    info["args"].update(init_from="base", encoder_blocks=[1, 1, 2, 4], middle_blocks=4)
    assert make_model_card.stage_notes(info, "motion_deblur") == (
        "grown from 10 to 16 blocks (new ones start as identities)"
    )
    assert "grown to" not in make_model_card.stage_notes(base, "motion_deblur")
    # A later fine-tune of the grown net inherits its blocks (flags left out) or repeats them: no growth either time.
    later = _train_info("train/train_indi.py --init_from grown", 20, "cpu", base=info)
    later["args"].update(init_from="grown")
    assert "grown to" not in make_model_card.stage_notes(later, "motion_deblur")
    later["args"].update(encoder_blocks=[1, 1, 2, 4])
    assert "grown to" not in make_model_card.stage_notes(later, "motion_deblur")


def test_trained_on_names_the_photo_mix_stages_and_their_failure_cases():
    definition, photo = {"args": {}}, {"args": {"degradation_mix": "photo"}}
    # Only the definition: the card says what it always said.
    assert make_model_card.trained_on_text("jpeg", [definition]) == make_model_card.TRAINING_DEGRADATION["jpeg"]
    assert make_model_card.fails_on_text("jpeg", [definition]) == make_model_card.FAILS_ON["jpeg"]
    text = make_model_card.trained_on_text("jpeg", [definition, definition, photo])
    assert text.startswith("stages 1–2: PIL JPEG compression at a random quality in [10, 50]")
    assert text.endswith("stage 3 (photo mix): PIL JPEG at a random quality in [10, 90], 4:2:0 or 4:4:4 chroma, "
                         "25 % of the images saved twice")  # fmt: skip
    assert "quality below 10, more than two saves" in make_model_card.fails_on_text("jpeg", [definition, photo])
    # Every stage on the mix: no stage list; sr4's mix is its definition, so nothing changes.
    assert make_model_card.trained_on_text("defocus_deblur", [photo]).startswith("disk blur of radius 0.5–6 px or")
    sr4 = make_model_card.trained_on_text("sr4", [definition, photo])
    assert sr4 == make_model_card.TRAINING_DEGRADATION["sr4"]
    # A mix stage followed by a definition stage: the failure cases are the definition's again.
    assert make_model_card.fails_on_text("jpeg", [photo, definition]) == make_model_card.FAILS_ON["jpeg"]
    assert make_model_card.trained_on_text("motion_deblur", [photo, definition, photo]).startswith("stage 2: ")


def test_the_model_index_names_the_evaluation_s_photos_by_its_data_dir():
    assert make_model_card.evaluation_photos({"data_dir": "data/photos/val"})[1] == "debian-wallpaper-photos-val"
    assert make_model_card.evaluation_photos({"data_dir": "data/shared_photos/val/"}) == (
        "varied free-licensed photos",
        "indi-shared-photos-val",
    )
    assert make_model_card.evaluation_photos({"data_dir": "/tmp/my_val"}) == ("the photos of /tmp/my_val", "my_val")


def test_stage_notes_name_a_degradation_mix_other_than_the_definition():
    info = _train_info("train/train_indi.py --degradation_mix photo", 30, "cpu")
    assert make_model_card.stage_notes(info, "jpeg") == ""  # recorded before the flag: the definition
    info["args"].update(degradation_mix="benchmark")
    assert make_model_card.stage_notes(info, "jpeg") == ""
    info["args"].update(degradation_mix="photo")
    assert make_model_card.stage_notes(info, "jpeg") == "photo degradation mix (train/README.md)"


def test_a_missed_floor_says_what_the_stages_tried():
    """Below its floor, a card lists what its training tried (from train_info.json), not a promise of more of the same."""
    first = _train_info("python train/train_indi.py", 50, "NVIDIA H200")  # 50 steps of 12 s: 10 min
    first["args"].update(eps=0.02)
    second = _train_info("python train/train_indi.py --init_from first", 475, "CPU (AMD EPYC, 1 thread)", base=first)
    second["args"].update(loss="nmse", t_sampling="mixture", t_one_probability=0.5, eps=0.01, init_from="first")
    third = _train_info("python train/train_indi.py --init_from second", 25, "NVIDIA H100", base=second)
    third["args"].update(
        loss="nmse",
        t_sampling="mixture",
        t_one_probability=0.4,
        eps=0.01,
        init_from="second",
        encoder_blocks=[1, 1, 2, 4],
        middle_blocks=4,
    )
    stages = make_model_card.training_stages(third)
    assert make_model_card.tried_text(stages) == (
        "Its stages above tried l1 and nmse losses; p(t) uniform and t = 1 at 0.4 or 0.5; eps 0.02 "
        "and 0.01; a network grown from 10 to 16 blocks."
    )
    # Their minutes are the card's "A short training" line's, said once.
    assert make_model_card.total_training_text(stages) == "3 stages: 15 min on GPUs, 95 min on CPUs"
    motion = [
        {
            "setting": "default",
            "gain_over_input_db_one_step": 1.25,
            "model_eps": 0.01,
            "table": [_row("degraded input", None, 29.5, 0.25), _row("InDI", 1, 30.75, 0.20)],
        }
    ]
    line = make_model_card.floor_limitations(motion, "motion_deblur", stages=stages)[0]
    assert "(`eval_default.json`). Its stages above tried l1" in line and "a GPU" not in line
    # One network throughout, one p(t): no "grown", no "and".
    assert make_model_card.tried_text(stages[:1]) == (
        "Its stages above tried l1 losses; p(t) uniform; eps 0.02; a 10-block network."
    )
    assert make_model_card.total_training_text(stages[:1]) == "10 min on NVIDIA H200"


def test_regression_baseline_row_and_plot_line(tmp_path):
    repo = tiny_repo(tmp_path / "repo", "jpeg", identity=False)
    baseline = tiny_repo(tmp_path / "baseline", "jpeg", identity=True)  # stands in for a `--t_sampling one` model
    result = evaluate_tiny(repo, smooth_photos(tmp_path / "photos"), "jpeg", "--baseline_model", str(baseline))
    rows = {r["method"]: r for r in result["table"]}
    assert rows["regression baseline"]["steps"] == 1
    # The identity baseline returns its input: its scores are the degraded input's.
    assert rows["regression baseline"]["psnr"] == pytest.approx(rows["degraded input"]["psnr"], abs=1e-4)


def test_bm3d_reference_row_and_card_sentence(tmp_path, monkeypatch):
    """BM3D (true sigma) is scored beside InDI and quoted in the card; with a stand-in for the optional bm3d
    package (its binary is not a project requirement) that returns the clean-ish input unchanged."""
    import types

    calls = []

    def bm3d_rgb(noisy, sigma_psd):
        calls.append(sigma_psd)
        return noisy  # returns the noisy image: its row must then equal the input row

    monkeypatch.setitem(sys.modules, "bm3d", types.SimpleNamespace(bm3d_rgb=bm3d_rgb))
    repo = tiny_repo(tmp_path / "repo", "denoise", identity=False, eps=0.02)
    result = evaluate_tiny(repo, smooth_photos(tmp_path / "photos"), "denoise", "--sigma", "25", "--bm3d")
    rows = {r["method"]: r for r in result["table"]}
    assert calls and all(sigma == pytest.approx(25 / 255) for sigma in calls)
    assert rows[eval_indi.BM3D]["psnr"] == pytest.approx(rows["degraded input"]["psnr"], abs=1e-3)
    assert rows[eval_indi.BM3D]["steps"] is None
    (tmp_path / "repo" / "train_info.json").write_text(json.dumps({"args": {}, "command": "x", "global_step": 1}))
    table = make_model_card.table_markdown(result, compact=True)
    # Every InDI row walks with eps 0.02: the steps header names it, no eps column.
    assert table.startswith("| method | steps (eps 0.02) | PSNR (dB) ↑ |") and f"| {eval_indi.BM3D} |  | " in table


def test_bm3d_is_for_denoising_and_needs_its_package(tmp_path, monkeypatch):
    photos = smooth_photos(tmp_path / "photos")
    repo = tiny_repo(tmp_path / "repo", "jpeg", identity=True)
    with pytest.raises(SystemExit, match="denoising baseline"):
        evaluate_tiny(repo, photos, "jpeg", "--bm3d")
    monkeypatch.setitem(sys.modules, "bm3d", None)  # not installed
    repo = tiny_repo(tmp_path / "repo2", "denoise", identity=True)
    with pytest.raises(SystemExit, match="pip install bm3d"):
        evaluate_tiny(repo, photos, "denoise", "--bm3d")


@pytest.mark.parametrize("task", ["defocus_deblur", "motion_deblur"])
def test_oracle_deconvolution_reproduces_the_evaluation_blur_and_beats_it(tmp_path, task):
    from research import oracle_deconvolution

    result = oracle_deconvolution.main(
        [
            "--task",
            task,
            "--data_dir",
            str(smooth_photos(tmp_path / "photos", size=64)),
            "--crop",
            "64",
            "--json",
            str(tmp_path / "oracle.json"),
        ]
    )
    assert len(result["images"]) == 2 and json.loads((tmp_path / "oracle.json").read_text()) == result
    # Told the true kernel, the best regularised inverse restores smooth photos better than the blurred input.
    assert result["oracle_psnr"] > result["input_psnr"] + 1.0
    assert "model" not in result and "by_blur_size" not in result


def test_oracle_deconvolution_tabulates_a_model_s_gain_by_blur_size(tmp_path):
    from research import oracle_deconvolution

    photos = smooth_photos(tmp_path / "photos", count=2, size=128)
    repo = tiny_repo(tmp_path / "repo", "defocus_deblur", identity=True)
    result = oracle_deconvolution.main(
        [
            "--task",
            "defocus_deblur",
            "--data_dir",
            str(photos),
            "--crop",
            "64",
            "--grid",
            "2",
            "--model",
            str(repo),
            "--bins",
            "2",
            "--threads",
            "1",
        ]
    )
    rows = result["images"]
    assert len(rows) == 8 and all(1.0 <= r["blur_size"] <= 6.0 for r in rows)
    # the identity model's 1 step returns the blurred input (clipped to [0, 1] by the pipeline, where the noise left
    # it): no gain in any bin
    assert all(r["model_psnr"] == pytest.approx(r["input_psnr"], abs=0.05) for r in rows)
    table = result["by_blur_size"]
    assert sum(b["crops"] for b in table) == 8
    assert all(b["blur_size"] in ([1.0, 3.5], [3.5, 6.0]) for b in table)  # empty bins are left out
    for b in table:
        members = [r for r in rows if b["blur_size"][0] <= r["blur_size"] <= b["blur_size"][1]]
        assert b["crops"] == len(members) and b["model_gain_db"] == pytest.approx(0.0, abs=0.05)
        assert b["oracle_gain_db"] == pytest.approx(np.mean([r["oracle_psnr"] - r["input_psnr"] for r in members]))
    # the radius recorded is the one the blur used: a larger disk blurs more
    small, large = min(rows, key=lambda r: r["blur_size"]), max(rows, key=lambda r: r["blur_size"])
    assert small["blur_size"] < large["blur_size"]


@pytest.mark.slow
def test_verify_zoo_reruns_the_recorded_evaluation_and_checks_the_card(tmp_path, capsys):
    """train/verify_zoo.py: a repo whose card and evaluation are current matches; a changed number or a hand-edited
    card is named."""
    import shlex

    from research import floor_check
    from zoo import verify_zoo

    repo = tiny_repo(tmp_path / "indi-jpeg", "jpeg", identity=False, eps=0.02)
    photos = smooth_photos(tmp_path / "photos")
    argv = tiny_eval_argv(repo, photos, "jpeg")
    eval_indi.main(argv)
    path = repo / "eval_q10.json"
    recorded = json.loads(path.read_text())
    # In pytest, sys.argv is pytest's: record the command as the script would have.
    recorded["command"] = "python train/eval_indi.py " + shlex.join(argv)
    path.write_text(json.dumps(recorded))
    (repo / "train_info.json").write_text(json.dumps(_train_info("train_indi.py ...", steps=5)))
    make_model_card.main([str(repo)])

    assert verify_zoo.main([str(repo), "--json", str(tmp_path / "verify.json")]) == 0
    result = json.loads((tmp_path / "verify.json").read_text())[0]
    assert result["setting"] == "q10" and result["problems"] == [] and result["card_current"] is True
    assert result["largest_difference"]["psnr"] < 0.01
    assert "| indi-jpeg | q10 |" in capsys.readouterr().out
    # --jobs 2: the two recorded evaluations re-run side by side, with the same verdicts, in the repo's order
    argv_q30 = [*argv, "--quality", "30"]
    eval_indi.main(argv_q30)
    q30 = json.loads((repo / "eval_q30.json").read_text())
    q30["command"] = "python train/eval_indi.py " + shlex.join(argv_q30)
    (repo / "eval_q30.json").write_text(json.dumps(q30))
    make_model_card.main([str(repo)])
    assert verify_zoo.main([str(repo), "--jobs", "2", "--json", str(tmp_path / "verify.json")]) == 0
    assert [(r["setting"], r["problems"]) for r in json.loads((tmp_path / "verify.json").read_text())] == [
        ("q10", []),
        ("q30", []),
    ]

    # A floor check in the repo is re-run too, and the card states it.
    floor_argv = [
        *argv[: argv.index("--steps")],
        "--threads",
        "1",
        "--seed_sets",
        "2",
        "--tradeoff_steps",
        "2",
        "--json",
        str(repo / "floor_check.json"),
    ]
    floor = floor_check.main(floor_argv)
    floor["command"] = "python train/floor_check.py " + shlex.join(floor_argv)
    (repo / "floor_check.json").write_text(json.dumps(floor))
    make_model_card.main([str(repo)])
    assert "(mean ± s.e. over 2 draws of 2 crops" in (repo / "README.md").read_text()
    assert verify_zoo.main([str(repo), "--jobs", "2", "--json", str(tmp_path / "verify.json")]) == 0
    rows = json.loads((tmp_path / "verify.json").read_text())
    assert [(r["setting"], r["problems"]) for r in rows] == [("q10", []), ("q30", []), ("q10, floor check", [])]
    floor["sets"][1]["gain_db"] += 0.2  # the second draw: the card still builds, the re-run disagrees
    (repo / "floor_check.json").write_text(json.dumps(floor))
    assert verify_zoo.main([str(repo), "--json", str(tmp_path / "verify.json")]) == 1
    rows = json.loads((tmp_path / "verify.json").read_text())
    assert rows[2]["problems"][0].startswith(f"seed {floor['sets'][1]['seed']} gain_db: card")
    floor["sets"][0]["gain_db"] += 0.2  # the first draw is the evaluation's own: the card cannot be made
    (repo / "floor_check.json").write_text(json.dumps(floor))
    assert verify_zoo.main([str(repo), "--json", str(tmp_path / "verify.json")]) == 1
    rows = json.loads((tmp_path / "verify.json").read_text())
    assert any(p.startswith("the card cannot be made:") and "is stale" in p for p in rows[0]["problems"])
    (repo / "floor_check.json").unlink()
    make_model_card.main([str(repo)])

    recorded["table"][1]["psnr"] += 0.5
    path.write_text(json.dumps(recorded))  # the card, made from the old numbers, is now stale too
    assert verify_zoo.main([str(repo), "--json", str(tmp_path / "verify.json")]) == 1
    problems = json.loads((tmp_path / "verify.json").read_text())[0]["problems"]
    assert any("psnr: card" in p for p in problems)
    assert any("README.md is not the card" in p for p in problems)


def test_verify_zoo_refuses_a_command_that_is_not_the_evaluation():
    from zoo import verify_zoo

    with pytest.raises(ValueError, match="not a train/eval_indi.py command"):
        verify_zoo.recorded_arguments({"command": "python something_else.py --x 1"}, Path("/tmp/x"))
    argv = verify_zoo.recorded_arguments(
        {"command": "python train/eval_indi.py --model m --output_dir old --crop 256"}, Path("/tmp/new")
    )
    assert argv == ["--model", "m", "--crop", "256", "--output_dir", "/tmp/new"]


@pytest.mark.skipif(not (PEERS_DIR / "cdncnn_b.safetensors").is_file(), reason="no ../shared/peers beside the checkout")
def test_peers_are_scored_beside_the_denoiser_at_their_sigma(tmp_path):
    repo = tiny_repo(tmp_path / "repo", "denoise", identity=False)
    photos = smooth_photos(tmp_path / "photos")
    rows = {r["method"]: r for r in evaluate_tiny(repo, photos, "denoise", "--sigma", "25", "--peers")["table"]}
    assert {"CDnCNN-B (blind)", "CDnCNN-S (sigma 25 only)"} <= set(rows)
    assert rows["CDnCNN-S (sigma 25 only)"]["psnr"] > rows["degraded input"]["psnr"] + 5  # a real denoiser
    rows = {r["method"] for r in evaluate_tiny(repo, photos, "denoise", "--sigma", "15", "--peers")["table"]}
    assert "CDnCNN-B (blind)" in rows and not any(m.startswith("CDnCNN-S") for m in rows)  # no S model for 15


def test_peers_are_for_denoising_and_name_a_missing_folder(tmp_path, monkeypatch):
    repo, photos = tiny_repo(tmp_path / "repo", "jpeg", identity=False), smooth_photos(tmp_path / "photos")
    with pytest.raises(SystemExit, match="--peers are denoisers"):
        evaluate_tiny(repo, photos, "jpeg", "--peers")
    monkeypatch.setattr(peers, "PEERS_DIR", tmp_path / "nowhere")
    with pytest.raises(SystemExit, match="no peer weights at .*nowhere"):
        evaluate_tiny(tiny_repo(tmp_path / "denoiser", "denoise", identity=False), photos, "denoise", "--peers")


def test_the_data_line_names_each_stage_s_photos():
    debian = {"args": {"train_data_dir": "data/photos/train"}}
    shared = {"args": {"train_data_dir": "data/shared_photos/train"}}
    assert make_model_card.data_text([debian, debian]).startswith("29 free-licensed Debian wallpaper photos")
    text = make_model_card.data_text([debian, debian, shared])
    assert text.startswith("stages 1–2: 29 free-licensed") and "; stage 3: 365 varied free-licensed photos" in text
    assert "stage 1: the photos of `mine/`" in make_model_card.data_text(
        [{"args": {"train_data_dir": "mine/"}}, shared]
    )
    assert text.endswith("Sources and licences: the project's `train/DATA.md`.")


def test_estimator_row_reads_the_repo_estimator(tmp_path):
    """The Model details row on strength="auto": held-out error and threshold from estimator/, the start curve and
    the JPEG tables only where the config has them; no row without an estimator."""
    assert make_model_card.estimator_row(tmp_path) is None
    (tmp_path / "estimator").mkdir()
    validation = {"crops": 256, "mae": 0.0412, "p90_abs_error": 0.0987}
    (tmp_path / "estimator" / "train_info.json").write_text(json.dumps({"validation": validation}))
    (tmp_path / "estimator" / "config.json").write_text(json.dumps({"nothing_below": 0.15137}))
    name, text = make_model_card.estimator_row(tmp_path)
    assert name == "Start estimator"
    assert "(error on 256 held-out crops: mean 0.041, 90th pct. 0.099). Below 0.151 " in text
    assert text.endswith("comes back unchanged (`docs/blind.md`).") and "curve" not in text
    config = {"nothing_below": 0.5, "start_curve": [[0.0, 0.0], [1.0, 1.0]], "quality_curve": [[10, 1.0]]}
    (tmp_path / "estimator" / "config.json").write_text(json.dumps(config))
    _, text = make_model_card.estimator_row(tmp_path)
    assert "; above, a measured curve sets the start (or the JPEG tables, if higher) (`docs/blind.md`)." in text
