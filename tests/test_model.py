"""Model behaviour on real songs with the tiny preset: learning, causality, memory,
compression, free bits and checkpoint round trips."""

import pytest
import torch

from mtvae import checkpoint as ck
from mtvae.config import model_config
from mtvae.data import DataDir
from mtvae.data.windows import TrainWindows
from mtvae.model import MTVAE
from mtvae.model.vae import free_bits_kl


def build(data, **overrides):
    meta = DataDir(data).meta
    cfg = model_config("tiny", vocab_size=meta["vocab_size"], n_genres=len(meta["genres"]),
                       pad_id=meta["pad_id"], dropout=0.0, **overrides)
    torch.manual_seed(0)
    return MTVAE(cfg)


def batch_of(data, model, segments=4, size=4, step=0):
    cfg = model.cfg
    store = DataDir(data).split("train")
    return TrainWindows(store, segments * cfg.seg_len, size, cfg.max_bar_len, cfg.pad_id).batch(step)


def test_tiny_preset_is_small(tiny_data):
    assert build(tiny_data).num_parameters() < 1_000_000


@pytest.mark.slow
def test_loss_falls_by_more_than_half_on_a_fixed_batch(tiny_data):
    model = build(tiny_data)
    batch = batch_of(tiny_data, model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(200):
        out = model(batch, beta=0.1, free_bits=0.1)
        first = first if first is not None else out["loss"].item()
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    assert out["loss"].item() < 0.5 * first


def test_a_future_token_never_changes_earlier_logits(tiny_data):
    model = build(tiny_data).eval()
    batch = batch_of(tiny_data, model)
    ref = model(batch)["logits"]
    S = model.cfg.seg_len
    for t in (5, S + 3, 3 * S - 1):  # inside the first segment, and in later ones
        changed = batch_of(tiny_data, model)
        changed.inputs[:, t] = (changed.inputs[:, t] + 17) % model.cfg.vocab_size
        out = model(changed)["logits"]
        assert torch.equal(out[:, :t], ref[:, :t])
        assert not torch.allclose(out[:, t], ref[:, t])


def logits_of_segment_2_when_segment_1_changes(model, data):
    batch = batch_of(data, model, segments=2)
    ref = model(batch)["logits"]
    changed = batch_of(data, model, segments=2)
    S = model.cfg.seg_len
    changed.inputs[:, 2:S] = (changed.inputs[:, 2:S] + 5) % model.cfg.vocab_size
    return (model(changed)["logits"][:, S:] - ref[:, S:]).abs().max().item()


def test_the_memory_carries_context_across_segments(tiny_data):
    with_memory = build(tiny_data, use_vae=False).eval()
    without = build(tiny_data, use_vae=False, use_memory=False).eval()
    assert logits_of_segment_2_when_segment_1_changes(with_memory, tiny_data) > 1e-4
    assert logits_of_segment_2_when_segment_1_changes(without, tiny_data) == 0.0


def test_compressed_memory_fills_once_the_memory_overflows(tiny_data):
    model = build(tiny_data).eval()
    cfg = model.cfg
    batch = batch_of(tiny_data, model, segments=8)
    z = torch.zeros(batch.inputs.shape[0], batch.bar_mask.shape[1], model.d_cond)
    cond = torch.gather(z, 1, batch.bar_idx[..., None].expand(-1, -1, z.shape[-1]))
    S = cfg.seg_len
    memory = model.decoder.empty_memory(batch.inputs.shape[0], "cpu")
    seen = []
    for k in range(8):
        x = model.embed(batch.inputs[:, k * S:(k + 1) * S])
        _, memory, recon = model.decoder(x, cond[:, k * S:(k + 1) * S], memory)
        seen.append((memory.lengths, recon.item()))
    tokens_to_overflow = cfg.mem_len // S
    for k, ((M, C), recon) in enumerate(seen):
        n = (k + 1) * S  # tokens seen
        assert M == min(n, cfg.mem_len)
        assert C == min(max(n - cfg.mem_len, 0) // cfg.cmem_ratio, cfg.cmem_len)
        assert (recon > 0) == (k >= tokens_to_overflow)
    assert seen[-1][0][1] == cfg.cmem_len  # full


def grads(model, loss):
    model.zero_grad()
    loss.backward(retain_graph=True)
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_reconstruction_loss_trains_only_the_compression(tiny_data):
    model = build(tiny_data)
    out = model(batch_of(tiny_data, model), beta=1.0)
    recon_params = grads(model, out["recon"])
    compression = {n for n, _ in model.named_parameters() if n.startswith("decoder.compress.")}
    assert recon_params == compression
    ce_params = grads(model, out["ce"])
    assert not (ce_params & compression)  # the language-model loss never reaches it
    assert "decoder.blocks.0.attn.qkv.weight" in ce_params


def test_free_bits_clamp_the_kl_of_each_dimension():
    kl = torch.tensor([[0.1, 2.0, 0.3], [0.1, 4.0, 0.1]], requires_grad=True)
    value = free_bits_kl(kl, free_bits=0.5)
    # per-dimension means 0.1, 3.0, 0.2: the small ones cost 0.5 each and get no gradient
    assert value.item() == pytest.approx(0.5 + 3.0 + 0.5)
    value.backward()
    assert kl.grad[:, 0].abs().sum() == 0 and kl.grad[:, 2].abs().sum() == 0
    assert torch.allclose(kl.grad[:, 1], torch.tensor([0.5, 0.5]))


def test_a_reloaded_checkpoint_gives_identical_logits(tiny_data, tmp_path):
    model = build(tiny_data).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    batch = batch_of(tiny_data, model)
    ck.save_weights(model, tmp_path / "m.safetensors")
    other = build(tiny_data).eval()
    ck.load_weights(other, tmp_path / "m.safetensors")
    assert torch.equal(model(batch)["logits"], other(batch)["logits"])


def test_an_interrupted_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"previous")

    def dies_midway(tmp):
        open(tmp, "wb").write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ck.atomic_write(path, dies_midway)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_the_posterior_can_start_narrow(tiny_data):
    model = build(tiny_data, init_logvar=-4.0).eval()
    batch = batch_of(tiny_data, model)
    mu, logvar = model.encode(batch.enc_tokens, batch.enc_bar, batch.bar_mask.shape[1])
    wide = build(tiny_data, init_logvar=0.0).eval()
    _, logvar0 = wide.encode(batch.enc_tokens, batch.enc_bar, batch.bar_mask.shape[1])
    real = batch.bar_mask
    assert (logvar[real] - logvar0[real]).mean().item() == pytest.approx(-4.0, abs=1e-4)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_the_users_umask(tmp_path, umask, mode):
    """Atomic writes (a temp file renamed) and checkpoint sets give their files the mode any
    program's would get, not the temporary file's private 0600."""
    import os
    import stat

    old = os.umask(umask)
    try:
        ck.write_text(tmp_path / "settings.json", "{}")
        ck.commit(tmp_path, {"weights": lambda tmp: open(tmp, "w").write("w")}, step=1)
    finally:
        os.umask(old)
    for name in ("settings.json", "weights"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_the_memory_caches_the_keys_and_values_its_states_project_to(tiny_data):
    """Keys/values are projected once per token (in its segment) and carried: they must be
    what projecting the memory's states again would give, and the compressed memory's must
    fill as slots are made."""
    model = build(tiny_data).eval()
    cfg = model.cfg
    batch = batch_of(tiny_data, model, segments=6, size=2)
    cond = torch.randn(2, batch.inputs.shape[1], model.d_cond)
    with torch.no_grad():
        _, memory, _ = model.decode(batch.inputs, cond)
        assert memory.lengths == (cfg.mem_len, cfg.cmem_len)
        for i, blk in enumerate(model.decoder.blocks):
            again = blk.attn.project_kv(blk.ln1(memory.mem[i]))
            torch.testing.assert_close(memory.mem_kv[i], again, atol=1e-5, rtol=1e-5)
            assert memory.cmem_kv[i].shape == (2, cfg.cmem_len, 2 * cfg.d_model)
