import pytest
import torch

from vermem.models import loading


def test_local_folder_record_and_load_give_the_same_model(tiny_model_dir, tiny_model):
    rec = loading.resolve("tiny", {"source": "local", "path": str(tiny_model_dir)})
    assert rec["source"] == "local" and rec["path"] == str(tiny_model_dir.resolve())
    assert (rec["n_layers"], rec["n_heads"], rec["d_model"]) == (2, 4, 32)
    assert rec["architecture"] == "GPTNeoXForCausalLM" and rec["dtype"] == "float32"
    model, tok = loading.load(rec, "cpu")
    x = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(model(x).logits, tiny_model(x).logits)
    assert tok.eos_token == "<|endoftext|>"


def test_a_float16_model_runs_in_float32_on_a_cpu(tiny_model_dir, tiny_model):
    # the authors ran GPT-Neo-125M in float16 on a GPU (config/lasy2025.yaml); half precision
    # on a CPU would be slow and lacks kernels, so there it runs in float32, exactly
    rec = loading.resolve("tiny", {"source": "local", "path": str(tiny_model_dir),
                                  "dtype": "float16"})
    assert rec["dtype"] == "float16"
    model, _ = loading.load(rec, "cpu")
    assert next(model.parameters()).dtype == torch.float32
    x = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(model(x).logits, tiny_model(x).logits)


def test_hub_id_and_revision_go_to_the_hub_and_are_recorded(tiny_model_dir, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision))
        return str(tiny_model_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    rec = loading.resolve("p70", {"source": "hub", "id": "EleutherAI/pythia-70m-deduped",
                                 "revision": "step3000", "dtype": "bfloat16"})
    assert calls == [("EleutherAI/pythia-70m-deduped", "step3000")]
    assert rec["id"] == "EleutherAI/pythia-70m-deduped" and rec["revision"] == "step3000"
    assert rec["commit"] == tiny_model_dir.name
    model, _ = loading.load(rec, "cpu")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_unreachable_hub_is_an_error_naming_model_and_revision(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(loading.ModelError, match=r"models.p: cannot fetch EleutherAI/nope@step1"):
        loading.resolve("p", {"source": "hub", "id": "EleutherAI/nope", "revision": "step1"})


def test_local_folder_without_model_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(loading.ModelError, match=r"models.m.path: no config.json in"):
        loading.resolve("m", {"source": "local", "path": str(tmp_path)})


def test_cuda_asked_for_without_cuda_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(loading.ModelError, match="no CUDA device"):
        loading.pick_device("cuda")
    assert loading.pick_device("auto").type == "cpu"
