"""Evaluation: ``evaluate(RUN_DIR, DATA_DIR)`` and ``mtvae evaluate``.

* likelihood on a split: cross-entropy in bits per token and per note, the ELBO
  (reconstruction + KL), KL per bar, active latent units (variance of mu above 0.01);
* whether the decoder reads its latents: reconstruction of held-out songs' first bars from
  their posterior means (greedy and sampled; per-bar chroma and groove similarity and note
  F1, each beside the floor of an unrelated song) and a latent swap (see ``reconstruction``);
* control: Spearman's rho between the rhythm / polyphony class asked for and the class measured
  in what comes out;
* music statistics (Yang & Lerch 2018) of prior samples against the split, per feature the
  overlap area and KL of the two distributions, with the train split as the ceiling and any
  extra folders of MIDI (e.g. a baseline's samples) in the same table;
* memorisation: the longest run of tokens a sample copies from the train split;
* infilling (models trained with ``--infill``): gaps of 2, 4 and 8 bars blanked in held-out
  songs and filled, against continuation that does not read the bars after the gap and
  against the original bars (see ``infilling``).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import symusic
import torch

from . import checkpoint as ck
from . import metrics as M
from .api import EncodedInput, MusicVAE
from .data import tokens as T
from .data.dataset import DataDir
from .data.windows import eval_batches, eval_windows
from .errors import UserError
from .generate import Plan, Sampling


def truncate(score: symusic.Score, bars: int) -> symusic.Score:
    """The first ``bars`` bars of a score (by its time signatures)."""
    tpq = score.ticks_per_quarter
    end = max((n.time + n.duration for t in score.tracks for n in t.notes), default=0)
    b = M._bars(score, end / tpq + 1e-6)
    if len(b) <= bars:
        return score
    return score.clip(0, int(round(b[bars] * tpq)), clip_end=True)


def _real(paths: list[Path], bars: int, limits) -> list[symusic.Score]:
    """The first ``bars`` bars of each song, read through the MIDI reader."""
    from .data.midi import read_midi

    return [truncate(read_midi(p, limits).score, bars) for p in paths]


@torch.no_grad()
def likelihood(m: MusicVAE, data: DataDir, split: str, max_windows: int | None,
               batch_size: int = 8, songs=None) -> dict:
    """On the split's songs (or those indices of it), in windows of the training length."""
    model, cfg = m.model, m.config
    store = data.split(split)
    length = cfg.train.segments * cfg.model.seg_len
    windows = eval_windows(store, length, max_windows, songs)
    is_note = torch.from_numpy((m.grammar.kind == T.PITCH) | (m.grammar.kind == T.PITCHDRUM))
    s = {"ce": 0.0, "ce_mean": 0.0, "kl": 0.0, "tokens": 0, "notes": 0, "correct": 0, "bars": 0,
         "kl_learnt": 0.0}
    mus = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for batch in eval_batches(store, windows, length, batch_size, cfg.model.max_bar_len,
                                  cfg.model.pad_id):
            batch = batch.to(m.device)
            n = float(batch.targets.ne(cfg.model.pad_id).sum())
            sampled = model(batch, sample=True)  # the ELBO: z ~ q(z|x)
            mean = model(batch, sample=False)  # reconstruction with z = mu
            valid = batch.targets != cfg.model.pad_id
            s["ce"] += sampled["ce"].item() * n
            s["ce_mean"] += mean["ce"].item() * n
            s["kl"] += sampled.get("kl_per_token", torch.zeros(())).item() * n
            s["tokens"] += n
            s["notes"] += int((is_note.to(batch.targets.device)[batch.targets] & valid).sum())
            s["correct"] += int(((mean["logits"].argmax(-1) == batch.targets) & valid).sum())
            s["bars"] += int(batch.bar_mask.sum())
            if m.prior is not None and "posterior" in sampled:
                s["kl_learnt"] += _kl_learnt(m.prior, batch, *sampled["posterior"])
            if "mu" in mean:
                mus.append(mean["mu"].cpu())
    n, ln2 = max(s["tokens"], 1), math.log(2)
    elbo = (s["ce"] + s["kl"]) / n  # nats per token
    out = {
        "split": split, "windows": len(windows), "tokens": int(s["tokens"]), "notes": s["notes"],
        "bits_per_token": elbo / ln2,
        "bits_per_note": (s["ce"] + s["kl"]) / ln2 / max(s["notes"], 1),
        "elbo_nats_per_token": elbo,
        "reconstruction_nats_per_token": s["ce"] / n,
        "kl_nats_per_token": s["kl"] / n,
        "kl_nats_per_bar": s["kl"] / max(s["bars"], 1),
        "teacher_forced_token_accuracy": s["correct"] / n,
        "teacher_forced_ce_with_mean_z": s["ce_mean"] / n,
    }
    if m.prior is not None:  # the same bound with the learnt prior in place of N(0, I)
        out["learnt_prior"] = {
            "bits_per_token": (s["ce"] + s["kl_learnt"]) / n / ln2,
            "kl_nats_per_token": s["kl_learnt"] / n,
            "kl_nats_per_bar": s["kl_learnt"] / max(s["bars"], 1)}
    if mus:
        mu = torch.cat(mus)
        var = mu.var(0)
        out["active_units"] = int((var > 0.01).sum())
        out["latent_dims"] = int(mu.shape[1])
    return out


POSITION_BANDS = ((0, 512), (512, 1024), (1024, 2048), (2048, 3000), (3000, 4000),
                  (4000, 6000), (6000, 8192))


@torch.no_grad()
def likelihood_by_position(m: MusicVAE, data: DataDir, split: str, length: int, songs=None,
                batch_size: int = 4) -> dict:
    """Reconstruction bits per token by position in the song: each song of the split (or of
    ``songs``) read from its first token up to ``length`` tokens, segment after segment with
    the memory (and compressed memory) carried, z drawn from q(z|x) as in the ELBO. What long
    context (the compressive memory's reach) buys shows as the late bands falling below the
    first. Per band of ``POSITION_BANDS``: mean bits per token over the songs that reach it."""
    model, cfg = m.model, m.config
    store = data.split(split)
    songs = list(range(len(store)) if songs is None else songs)
    length = int(np.ceil(length / cfg.model.seg_len)) * cfg.model.seg_len
    bands = [(a, b) for a, b in POSITION_BANDS if a < length]
    sums, counts = np.zeros(len(bands)), np.zeros(len(bands))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        starts = [(s, 0) for s in songs]  # every song from its first bar
        for batch in eval_batches(store, starts, length, batch_size, cfg.model.max_bar_len,
                                  cfg.model.pad_id):
            batch = batch.to(m.device)
            logits = model(batch, sample=True)["logits"]
            nll = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), batch.targets.flatten(), reduction="none",
                ignore_index=cfg.model.pad_id).view(batch.targets.shape).cpu().numpy()
            valid = (batch.targets != cfg.model.pad_id).cpu().numpy()
            for k, (a, b) in enumerate(bands):
                sums[k] += nll[:, a:b][valid[:, a:b]].sum()
                counts[k] += valid[:, a:b].sum()
    ln2 = math.log(2)
    return {"split": split, "songs": len(songs), "length": length,
            "bands": [{"from": a, "to": b, "tokens": int(n),
                       "bits_per_token": float(t / n / ln2) if n else None}
                      for (a, b), t, n in zip(bands, sums, counts)]}


def _kl_learnt(prior, batch, mu, logvar, z) -> float:
    """One-sample estimate of sum over the batch's bars of KL(q(z|x) || learnt prior):
    log q(z) - log p(z), with each window's bars read in order by the prior."""
    mask = batch.bar_mask.to(z.dtype)
    log_q = (-0.5 * ((z - mu).pow(2) * (-logvar).exp() + logvar + math.log(2 * math.pi))).sum(-1)
    nll = prior.nll(z, batch.rhythm, batch.polyphony, batch.genre, mask)
    return float(((log_q * mask) + nll).sum())


def held_out_songs(m: MusicVAE, songs: list[Path], n: int, bars: int,
                   rng: np.random.Generator) -> list[Path]:
    """The songs reconstruction and infilling are measured on: up to ``n`` of ``songs`` with
    at least ``bars`` bars, in the order of ``rng``'s permutation."""
    out = []
    for i in rng.permutation(len(songs)):
        if len(out) == n:
            break
        if len(m.read(songs[i]).bar_starts) >= bars:
            out.append(songs[i])
    return out


RECON_BATCH = 4  # songs decoded together in reconstruction (a subset is rechecked alike)


@torch.no_grad()
def reconstruction(m: MusicVAE, songs: list[Path], bars: int, seed: int,
                   partners: list[Path] | None = None, guidance: float | None = None,
                   greedy_only: bool = False) -> dict:
    """Does the decoder read its latents? On the first ``bars`` bars of held-out songs:

    * reconstruction from z = posterior mean (each bar keeps its attributes and meter), greedy
      and sampled at T = 1: per-bar chroma and groove cosine and note F1 (onset on a 16th grid
      and pitch) against the original, beside the *floor*, the same metric between the
      original and an unrelated song (song k's partner: ``partners[k]``, by default the next
      song in the list);
    * latent swap: song A decoded greedily with its partner B's bar latents (A's attributes
      and meters); the share of bars whose chroma (groove) is closer to B's bar than to A's.

    Every decoding uses latent ``guidance`` (None: the default).

    A decoder that ignores z scores near the floor and near 0 on the swap.
    """
    if m.model.encoder is None:
        return {}
    partners = partners or songs[1:] + songs[:1]
    pairs, files = [], []
    for a, b in zip(songs, partners):
        ea, eb = m.read(a).first_bars(bars), m.read(b).first_bars(bars)
        if len(ea.bar_starts) == bars == len(eb.bar_starts):
            pairs.append((ea, eb))
            files.append((a, b))
    if not pairs:
        return {}
    encs = [a for a, _ in pairs] + [b for _, b in pairs]  # songs, then their partners
    refs = [m.tokenizer.decode(e.ids.tolist()) for e in encs]
    zs = [m.encode(e).cpu() for e in encs]
    n = len(pairs)

    def plans(donors):
        return [Plan(m.conditions(zs[d], e.rhythm, e.polyphony, 0), bars, seed=seed + k,
                     timesigs=[int(t) for t in e.timesigs])
                for k, (e, d) in enumerate(zip(encs[:n], donors))]

    def decode(ps, temp):  # RECON_BATCH songs at a time: each batch's rows as any run makes them
        s = m.sampling(guidance=guidance, temperature=temp, seed=seed)
        return [o for i in range(0, len(ps), RECON_BATCH) for o in m.decode(ps[i:i + RECON_BATCH], s)]

    own = list(range(n))
    other = [n + k for k in own]
    out: dict = {"songs": n, "bars": bars}
    per_song = [{"song": Path(a).name} for a, _ in files]
    for name, temp in (("greedy", 0.0),) + ((("sampled", 1.0),) if not greedy_only else ()):
        outs = decode(plans(own), temp)
        rows = [M.bar_similarity(r, o, bars) for r, o in zip(refs, outs)]
        out[name] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        if name == "greedy":  # also against the file's own notes (as read, before tokens)
            real = _real([a for a, _ in files], bars, m.limits)
            rows_file = [M.bar_similarity(r, o, bars) for r, o in zip(real, outs)]
            out["greedy_vs_file"] = {k: float(np.mean([r[k] for r in rows_file]))
                                     for k in rows_file[0]}
            for song, r, rf in zip(per_song, rows, rows_file):
                song.update(greedy=r, greedy_vs_file=rf)
    out["per_song"] = per_song  # which songs reconstruct well, which do not
    if greedy_only:  # (a cheap check of a reported figure)
        return out
    floor = [M.bar_similarity(refs[k], refs[j], bars) for k, j in zip(own, other)]
    out["floor"] = {k: float(np.mean([r[k] for r in floor])) for k in floor[0]}
    real = _real([a for a, _ in files] + [b for _, b in files], bars, m.limits)
    floor = [M.bar_similarity(real[k], real[j], bars) for k, j in zip(own, other)]
    out["floor_vs_file"] = {k: float(np.mean([r[k] for r in floor])) for k in floor[0]}

    swapped = decode(plans(other), 0.0)
    follows = {"chroma": [], "groove": []}
    for k, j in zip(own, other):
        (ca, ga), (cb, gb), (co, go) = (M.bar_profiles(x, bars) for x in (refs[k], refs[j], swapped[k]))
        follows["chroma"] += (M.row_cosine(co, cb) > M.row_cosine(co, ca)).tolist()
        follows["groove"] += (M.row_cosine(go, gb) > M.row_cosine(go, ga)).tolist()
    out["latent_swap"] = {"pairs": n, "bars": len(follows["chroma"]),
                          "chroma_follows_donor": float(np.mean(follows["chroma"])),
                          "groove_follows_donor": float(np.mean(follows["groove"]))}
    return out


INFILL_GAPS = (2, 4, 8)
INFILL_BEFORE = 4  # bars kept before each gap
# (name, reads the bars after the gap, the gap's own latents instead of the prior's)
INFILL_METHODS = (("infill", True, False), ("continuation", False, False),
                  ("infill_own_latents", True, True), ("continuation_own_latents", False, True))


@torch.no_grad()
def join_nll(m: MusicVAE, bars: list[list[int]], rhythm, polyphony, timesigs, at: int) -> float:
    """The model's mean negative log-likelihood (nats/token) of bar ``at``'s tokens, read in
    order after the bars before it (as many whole bars as one training window holds, at least
    one), each bar's z its posterior mean: how well the music before leads into bar ``at``."""
    ctx = m.infill_context()
    first, used = at, len(bars[at])
    while first > 0 and (first == at or used + len(bars[first - 1]) <= ctx):  # >= 1 bar before
        first -= 1
        used += len(bars[first])
    part = bars[first:at + 1]
    ids = np.asarray([t for b in part for t in b], dtype=np.int64)
    starts = np.cumsum([0] + [len(b) for b in part[:-1]])
    sl = slice(first, at + 1)
    enc = EncodedInput(ids, starts, rhythm[sl], polyphony[sl], timesigs[sl])
    logits = m.teacher_forced_logits(enc)  # [len - 1, V]
    targets = torch.from_numpy(ids[1:]).to(logits.device)
    nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    return float(nll[int(starts[-1]) - 1:].mean())


def infilling(m: MusicVAE, songs: list[Path], seed: int, sampling: Sampling,
              gaps=INFILL_GAPS) -> dict:
    """For each held-out song and gap length g: bars ``INFILL_BEFORE + 1 .. + g`` blanked and
    written again, with the gap's latents from the prior (new bars) and from the song's own
    bars (``keep_latents``), each (a) infilled (reading the bars after the gap) and (b)
    continued from the bars before only (same latents, attributes, seed). Against the
    original gap: per-bar chroma / groove similarity and note F1, and the music statistics of
    the new bars (overlap with the original gaps'); the join: the NLL of the first kept bar
    after the gap (``join_nll``) after the new bars, beside the same after the original."""
    out: dict = {"gaps": list(gaps), "bars_before": INFILL_BEFORE}
    methods = list(INFILL_METHODS)
    encs = [m.read(p) for p in songs]
    for g in gaps:
        a, b = INFILL_BEFORE, INFILL_BEFORE + g
        use = [e for e in encs if len(e.bar_starts) > b]
        if not use:
            continue
        row: dict = {"songs": len(use)}
        orig_gaps, sims, joins, feats = [], {k: [] for k, *_ in methods}, \
            {k: [] for k, *_ in methods + [("original",)]}, {k: [] for k, *_ in methods}
        for i, e in enumerate(use):
            bars = e.bar_tokens()
            ref = m.tokenizer.decode([t for bar in bars[a:b] for t in bar])
            orig_gaps.append(ref)
            joins["original"].append(join_nll(m, bars, e.rhythm, e.polyphony, e.timesigs, b))
            for name, see_after, own in methods:
                _, new = m.fill(e, [(a, b)], replace(sampling, seed=seed + i),
                                keep_latents=own, see_after=see_after)
                gap = m.tokenizer.decode([t for bar in new[a:b] for t in bar])
                sims[name].append(M.bar_similarity(ref, gap, g))
                feats[name].append(gap)
                joins[name].append(join_nll(m, new, e.rhythm, e.polyphony, e.timesigs, b))
        real_f = M.set_features(orig_gaps)
        for name, *_ in methods:
            stats = M.compare_sets(real_f, M.set_features(feats[name]))
            row[name] = {k: float(np.mean([s[k] for s in sims[name]])) for k in sims[name][0]}
            row[name]["join_nll"] = float(np.mean(joins[name]))
            row[name]["statistics_overlap"] = float(np.mean([v["overlap"] for v in stats.values()]))
        row["original"] = {"join_nll": float(np.mean(joins["original"]))}
        out[str(g)] = row
    return out


def control(m: MusicVAE, per_class: int, bars: int, sampling: Sampling,
            coherence: float = 0.0, genre: str | None = None) -> dict:
    """Spearman's rho between asked and measured bar attribute classes."""
    edges = m.config.data["attribute_edges"]
    out = {}
    for attr in ("rhythm", "polyphony"):
        asked, measured, means = [], [], []
        for c in range(m.n_classes):
            pieces = m.sample(bars=bars, n=per_class, coherence=coherence, genre=genre,
                              sampling=replace(sampling, seed=sampling.seed + 100 * c), **{attr: c})
            pieces = pieces if isinstance(pieces, list) else [pieces]
            got = []
            for p in pieces:
                enc = T.encode_score(p, m.tokenizer, m.tables)
                vals = enc.rhythm if attr == "rhythm" else enc.polyphony
                got += T.attribute_classes(vals, edges[attr]).tolist()
            asked += [c] * len(got)
            measured += got
            means.append(float(np.mean(got)) if got else float("nan"))
        out[attr] = {"spearman_rho": M.spearman(asked, measured), "mean_measured_class": means,
                     "bars": len(measured)}
    return out


def evaluate(run_dir, data_dir, split: str = "test", samples: int = 32, bars: int = 8,
             seed: int = 0, max_windows: int | None = 200, device: str = "cpu",
             compare: dict[str, str] | None = None, control_per_class: int | None = None,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             progress=print, limits=None, coherence: float = 0.0, prior: str = "auto",
             guidance: float | None = None, genre: str | None = None,
             by_position: int = 0) -> dict:
    """Every metric above; returns a dict (the JSON ``mtvae evaluate`` writes).

    ``genre``: only the split's songs of that genre (the DATA_DIR's genres, e.g. each corpus
    given as GENRE=SOURCE to prepare), with prior and control samples of that genre and the
    train split's songs of that genre as the ceiling.

    ``temperature``, ``top_k``, ``top_p``: how the prior and control samples are drawn (plain
    sampling by default; e.g. ``top_k`` to match a baseline that filters its samples);
    ``coherence`` how alike their bars' latents are (see ``MusicVAE.sample``); ``prior``
    where their latents come from (see ``MusicVAE.load``) and ``guidance`` the latent
    guidance of every decoding (see ``Sampling``)."""
    from . import validate as V
    from .data.midi import DEFAULT_LIMITS

    if split not in ("train", "valid", "test"):
        raise UserError(f"--split {split!r}: choose train, valid or test")
    samples = V.integer("samples", samples, 1, 4096)
    bars = V.bars(bars)
    seed = V.seed(seed, allow_none=False)
    max_windows = V.integer("max_windows", max_windows, 0, 10**7, allow_none=True) or None
    by_position = V.integer("by_position", by_position, 0, 65536)
    V.integer("control_per_class", control_per_class, 1, 1024, allow_none=True)
    sampling = Sampling(temperature, top_k, top_p, guidance, seed).resolved()
    coherence = V.number("coherence", coherence, 0.0, 1.0)
    data = DataDir(data_dir)
    m = MusicVAE.load(run_dir, device=device, limits=limits or DEFAULT_LIMITS, prior=prior)
    if data.vocab_size != m.config.model.vocab_size:
        raise UserError(f"{data} has a vocabulary of {data.vocab_size} tokens; "
                        f"this model was trained on {m.config.model.vocab_size}")
    result: dict = {"run_dir": str(run_dir), "data_dir": str(data), "split": split,
                    "samples": samples, "bars": bars, "seed": seed,
                    "model_hash": m.model_hash(), "parameters": m.model.num_parameters(),
                    "vae": m.model.encoder is not None,
                    "sampling": {"temperature": temperature, "top_k": top_k, "top_p": top_p,
                                 "coherence": coherence},
                    # where prior and control samples' latents come from (``mtvae prior``)
                    "prior": "learnt" if m.prior is not None else "normal",
                    "guidance": sampling.guidance}  # of every decoding from latents
    rng = np.random.default_rng(seed)
    split_songs, train_songs = data.files(split), data.files("train")
    picked = None
    if genre is not None:
        known = {g.lower(): g for g in data.genres}
        if not isinstance(genre, str) or genre.lower() not in known:
            raise UserError(f"--genre {genre!r}: {data} has the genres {', '.join(data.genres)}")
        genre = known[genre.lower()]
        m._genre(genre)  # one line if the model does not know it
        result["genre"] = genre
        gid = data.genres.index(genre)
        picked = np.flatnonzero(np.asarray(data.split(split).genre) == gid).tolist()
        split_songs = [split_songs[i] for i in picked]
        train_songs = [train_songs[i] for i in
                       np.flatnonzero(np.asarray(data.split("train").genre) == gid)]
    if not split_songs:
        raise UserError(f"the {split} split of {data} is empty"
                        + (f" for --genre {genre}" if genre else ""))
    if not train_songs:
        raise UserError(f"the train split of {data} has no songs"
                        + (f" of --genre {genre}" if genre else ""))

    progress("likelihood ...")
    result["likelihood"] = likelihood(m, data, split, max_windows, songs=picked)
    if by_position:
        progress(f"by position (up to {by_position} tokens) ...")
        result["by_position"] = likelihood_by_position(m, data, split, by_position,
                                                        picked)

    recon_songs = held_out_songs(m, split_songs, min(samples, 16), bars, rng)
    if result["vae"]:
        progress("reconstruction ...")
        partners = None
        if len(recon_songs) == 1:  # a tiny split: the unrelated song comes from train
            partners = [p for p in train_songs if len(m.read(p).bar_starts) >= bars][:1]
        result["reconstruction"] = reconstruction(m, recon_songs, bars, seed, partners,
                                                  sampling.guidance)
    if m.can_infill:
        progress("infilling ...")
        result["infilling"] = infilling(m, recon_songs, seed, sampling)
    progress("control ...")
    # a quarter of the prior samples per class (16 samples: 4 per class, 256 bars of 8): one
    # per class read polyphony rho 0.65 where 256 bars give 0.45 (docs/RESULTS.md, "Latents")
    result["control"] = control(m, control_per_class or max(1, samples // 4), bars, sampling,
                                coherence, genre)

    progress(f"{samples} prior samples ...")
    generated = m.sample(bars=bars, n=samples, coherence=coherence, sampling=sampling,
                         genre=genre)
    generated = generated if isinstance(generated, list) else [generated]
    real = _real(split_songs, bars, m.limits)
    pick = rng.permutation(len(train_songs))[:len(split_songs)]
    ceiling = _real([train_songs[i] for i in pick], bars, m.limits)
    sets = {"mtvae": generated, "train (ceiling)": ceiling}
    for name, folder in (compare or {}).items():
        files = sorted(Path(folder).glob("*.mid"))
        if not files:
            raise UserError(f"--compare {name}={folder}: no .mid files there")
        sets[name] = _real(files, bars, m.limits)
    real_f = M.set_features(real)
    result["music_statistics"] = {
        name: M.compare_sets(real_f, M.set_features(scores)) for name, scores in sets.items()}

    progress("memorisation ...")
    train = data.split("train")
    index = M.CopyIndex([np.asarray(train.ids(i)) for i in range(len(train))])
    sample_ids = [T.encode_score(s, m.tokenizer, m.tables).ids for s in generated]
    runs = [index.longest(ids) for ids in sample_ids]
    lengths = [len(ids) for ids in sample_ids]
    result["memorisation"] = {"longest_copied_run": M.summary(runs),
                              "sample_tokens": M.summary(lengths)}
    return result


def format_table(r: dict) -> str:
    lk = r["likelihood"]
    on = r["split"] + (f", genre {r['genre']}" if r.get("genre") else "")
    lines = [f"mtvae evaluate · {r['run_dir']} on {on} ({lk['tokens']} tokens, "
             f"{r['parameters'] / 1e6:.2f}M parameters)", "",
             "| likelihood | value |", "|---|---:|",
             f"| bits per token (ELBO) | {lk['bits_per_token']:.3f} |",
             f"| bits per note | {lk['bits_per_note']:.3f} |",
             f"| reconstruction nats/token | {lk['reconstruction_nats_per_token']:.3f} |",
             f"| KL nats/token · per bar | {lk['kl_nats_per_token']:.3f} · {lk['kl_nats_per_bar']:.2f} |",
             *([f"| with the learnt prior: bits per token · KL nats per bar | "
                f"{lk['learnt_prior']['bits_per_token']:.3f} · "
                f"{lk['learnt_prior']['kl_nats_per_bar']:.2f} |"] if "learnt_prior" in lk else []),
             f"| teacher-forced token accuracy | {lk['teacher_forced_token_accuracy']:.3f} |"]
    if "active_units" in lk:
        lines.append(f"| active latent units | {lk['active_units']} / {lk['latent_dims']} |")
    if r.get("by_position"):
        bp = r["by_position"]
        lines += ["", f"| position in the song (tokens; {bp['songs']} songs read from the start) "
                  "| tokens | reconstruction bits per token |", "|---|---:|---:|"]
        lines += [f"| {b['from']}–{b['to']} | {b['tokens']} | {b['bits_per_token']:.3f} |"
                  for b in bp["bands"] if b["tokens"]]
    if r.get("reconstruction"):
        rc = r["reconstruction"]
        lines += ["", f"| reconstruction from z ({rc['songs']} songs, first {rc['bars']} bars) "
                  "| chroma | groove | note F1 |", "|---|---:|---:|---:|"]
        for name, label in (("greedy", "greedy"), ("sampled", "sampled, T = 1"),
                            ("floor", "floor: an unrelated song"),
                            ("greedy_vs_file", "greedy, against the MIDI file's notes"),
                            ("floor_vs_file", "floor, against the MIDI file's notes")):
            x = rc.get(name)
            if x is None:
                continue
            lines.append(f"| {label} | {x['chroma']:.3f} | {x['groove']:.3f} | {x['note_f1']:.3f} |")
        sw = rc["latent_swap"]
        lines += ["", f"latent swap ({sw['bars']} bars): {sw['chroma_follows_donor']:.0%} of bars "
                  f"follow the donor's chroma, {sw['groove_follows_donor']:.0%} its groove"]
    if r.get("infilling"):
        inf = r["infilling"]
        lines += ["", f"| infilling (gap after bar {inf['bars_before']}) | songs | chroma | "
                  "groove | note F1 | statistics overlap | join NLL (nats/token) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for g in inf["gaps"]:
            row = inf.get(str(g))
            if not row:
                continue
            for name, *_ in INFILL_METHODS:
                x = row[name]
                lines.append(f"| {g} bars: {name.replace('_', ' ')} | {row['songs']} | "
                             f"{x['chroma']:.3f} | {x['groove']:.3f} | {x['note_f1']:.3f} | "
                             f"{x['statistics_overlap']:.3f} | {x['join_nll']:.3f} |")
            lines.append(f"| {g} bars: original | {row['songs']} | | | | | "
                         f"{row['original']['join_nll']:.3f} |")
    ct = r["control"]
    lines += ["", "| control | Spearman ρ |", "|---|---:|"]
    lines += [f"| {a} | {ct[a]['spearman_rho']:.3f} |" for a in ("rhythm", "polyphony")]
    ms = r["music_statistics"]
    names = list(ms)
    lines += ["", f"prior samples' latents: {r.get('prior', 'normal')} prior; latent guidance "
              f"{r.get('guidance', 0.0):g}", "",
              "| feature (overlap ↑ / KL ↓) | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    for feat in ms[names[0]]:
        cells = [f"{ms[n][feat]['overlap']:.3f} / {ms[n][feat]['kl']:.3f}" for n in names]
        lines.append(f"| {feat} | " + " | ".join(cells) + " |")
    mem = r["memorisation"]
    lines += ["", f"memorisation: longest copied run median {mem['longest_copied_run']['median']:.0f}, "
              f"max {mem['longest_copied_run']['max']:.0f} tokens "
              f"(samples are {mem['sample_tokens']['median']:.0f} tokens long, median)"]
    return "\n".join(lines)


def write_json(result: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, default=float)
    ck.atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def token_accuracy(m: MusicVAE, song, bars: int | None = 16) -> float:
    """Teacher-forced next-token accuracy of a song's first ``bars`` bars, z = posterior mean."""
    from . import validate as V

    bars = V.bars(bars, hi=V.MAX_GEN_BARS, allow_none=True)
    enc = m.read(song).first_bars(bars)
    if len(enc.bar_starts) > V.MAX_GEN_BARS:
        enc = enc.first_bars(V.MAX_GEN_BARS)
    pred = m.teacher_forced_logits(enc).argmax(-1).cpu().numpy()
    return float(np.mean(pred == enc.ids[1:]))
