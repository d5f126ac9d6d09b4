"""The C export: compiled by the system C compiler, bit-exact against the integer reference, exit by exit."""

import re

import pytest
import torch

from eekit.__main__ import main
from eekit.compress import load_compressed, load_compressed_card
from eekit.compress.export_c import compile_and_run, export_c, find_compiler
from eekit.compress.mcu import power_failure
from eekit.compress.memory import buffer_plan
from eekit.compress.prune import set_density, strip_masks
from eekit.compress.quantize import early_exit, int_forward, quantize
from eekit.data import load_mnist
from eekit.models import branchy_lenet

NAME = "cnn-mnist-shared"
needs_cc = pytest.mark.skipif(find_compiler() is None, reason="no C compiler: install gcc (apt-get install gcc) "
                              "or set $CC to run the C export checks")


def _check(qmodel, images, labels, tmp_path):
    export_c(qmodel, tmp_path, "test")
    got = compile_and_run(tmp_path, images, len(qmodel["stages"]), qmodel["num_classes"])
    ref = int_forward(qmodel, images)
    taken = early_exit(qmodel, ref)
    for k in range(len(ref)):
        assert torch.equal(got["logits"][k], ref[k]), f"exit {k}: C and the integer reference differ"
        if labels is not None:
            assert torch.equal(got["logits"][k].argmax(1) == labels, ref[k].argmax(1) == labels)
    assert torch.equal(got["taken"], taken) and torch.equal(got["stopped"], taken)
    return got


@needs_cc
def test_shipped_model_in_c_equals_the_integer_reference_on_200_test_images(tmp_path):
    qmodel = load_compressed(NAME)
    test = load_mnist("test")
    got = _check(qmodel, test.images[:200], test.labels[:200], tmp_path)
    card = load_compressed_card(NAME)["c_export"]
    accuracy = [round(float((got["logits"][k].argmax(1) == test.labels[:200]).float().mean()), 4) for k in range(3)]
    assert card["mismatches"] == 0 and card["inputs_checked"] == 200 and accuracy == card["accuracy_per_exit_c"]
    assert len(set(got["taken"].tolist())) >= 2  # the early-exit loop does stop early on some images


@needs_cc
def test_q15_weights_and_sparse_layers_are_bit_exact_too(tmp_path):
    torch.manual_seed(0)
    model = branchy_lenet(shared_head=True).eval()  # random weights: every kernel path, no training needed
    set_density(model.stages[1][0], 0.2)  # a CSR conv ...
    set_density(model.stages[2][1], 0.1)  # ... and a CSR linear
    strip_masks(model)
    test = load_mnist("test")
    qmodel = quantize(model, test.images[:64].float() / 255, bits=16)
    qmodel["thresholds"] = torch.tensor([1000, 2000], dtype=torch.int32)
    _check(qmodel, test.images[:40], None, tmp_path)
    assert "typedef int16_t eek_w_t;" in (tmp_path / "eekit_model.c").read_text()
    assert "/* csr */" in (tmp_path / "eekit_model.c").read_text()
    # the resumable runtime through the CSR and Q15 kernels too (host build only: no Cortex-M toolchain needed)
    failures = power_failure(tmp_path, 0, 1, qemu=False, progress=False)
    assert failures["identical"] == failures["points_tried"] >= failures["boundary_points"] + 50


def test_generated_c_has_no_float_no_malloc_const_weights_and_planned_buffers(tmp_path):
    qmodel = load_compressed(NAME)
    export_c(qmodel, tmp_path, NAME)
    code = (tmp_path / "eekit_model.c").read_text()
    code_only = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    assert not re.search(r"\b(float|double|malloc|calloc|free)\b", code_only)
    arrays = re.findall(r"^static (const )?\w+ (\w+)\[", code_only, flags=re.M)
    assert all(const for const, name in arrays if name != "eek_pooled")  # the one scratch array in SRAM
    plan = buffer_plan(qmodel)
    assert f"buf_a[{plan['buffer_a']}], buf_b[{plan['buffer_b']}]" in code  # inside the persistent struct
    assert "static eek_nv_t eek_nv EEK_NVM;" in code


def test_export_c_cli(tmp_path, capsys):
    assert main(["export-c", NAME, "--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"eekit_model.h", "eekit_model.c", "main.c"}
    (tmp_path / "main.c").write_text("/* mine */")
    assert main(["export-c", NAME, "--out", str(tmp_path)]) == 2  # never overwrites without --force
    assert "--force" in capsys.readouterr().err and (tmp_path / "main.c").read_text() == "/* mine */"
    assert main(["export-c", NAME, "--out", str(tmp_path), "--force"]) == 0
    assert "eek_infer" in (tmp_path / "main.c").read_text()
    assert main(["export-c", "cnn-cifar10-two-stage", "--out", str(tmp_path)]) == 2
    assert "no compressed version" in capsys.readouterr().err
    assert main(["export-c", "cnn-cifar10", "--out", str(tmp_path / "cifar")]) == 0  # residual blocks, one head each
    assert "eek_add_run(" in (tmp_path / "cifar" / "eekit_model.c").read_text()


@needs_cc
def test_cifar10_residual_blocks_and_exit_heads_in_c_equal_the_integer_reference_on_200_test_images(tmp_path):
    from eekit import zoo
    from eekit.compress.pipeline import load_integer

    qmodel = load_integer("cnn-cifar10")  # int8 activations, residual adds, one head per exit
    assert qmodel["format"] == 2 and any(op["kind"] == "add" for ops in qmodel["stages"] for op in ops)
    test = zoo.RECIPES["cnn-cifar10"].test_set()
    got = _check(qmodel, test.images[:200], test.labels[:200], tmp_path)
    card = load_compressed_card("cnn-cifar10")["c_export"]
    accuracy = [round(float((got["logits"][k].argmax(1) == test.labels[:200]).float().mean()), 4) for k in range(5)]
    assert card["mismatches"] == 0 and card["inputs_checked"] == 200 and accuracy == card["accuracy_per_exit_c"]
    assert len(set(got["taken"].tolist())) >= 3  # the early-exit loop stops at several exits
    code = re.sub(r"/\*.*?\*/", "", (tmp_path / "eekit_model.c").read_text(), flags=re.S)
    assert not re.search(r"\b(float|double|malloc|calloc|free)\b", code)
    plan = buffer_plan(qmodel)  # three buffers: a residual block's input, its body, the sum
    assert re.search(r"int8_t " + ", ".join(f"b{i}\\[{n}\\]" for i, n in enumerate(plan["buffers"])), code)


@needs_cc
def test_a_small_residual_model_survives_power_failures_on_the_host(tmp_path):
    from eekit.compress.quantize import quantize_exit_heads
    from eekit.models import resnet_ee

    torch.manual_seed(0)
    model = resnet_ee(width=4).eval()  # random weights, every kind of op (residual adds, pooled heads)
    images = (torch.rand(8, 3, 32, 32) * 255).to(torch.uint8)
    qmodel = quantize_exit_heads(model, images.float() / 255)
    qmodel["thresholds"] = torch.tensor([30, 30, 30, 30], dtype=torch.int32)
    _check(qmodel, images, None, tmp_path)
    failures = power_failure(tmp_path, 0, 1, qemu=False, progress=False)
    assert failures["identical"] == failures["points_tried"] >= failures["boundary_points"] + 50
