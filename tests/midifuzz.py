"""A seeded generator of hostile and corrupted MIDI files (issue #9, hardening).

``build_corpus(out_dir, n, seed)`` writes ``n`` files named ``NNNN-<family>--<variant>.mid``,
each under 1 MB, derived from a few real files (POP909 + Nottingham by default) or built from
scratch, plus ``manifest.json`` describing every file. File ``i`` depends only on ``(seed, i)``
and the sources, so a failing file can be made again from its name; families are dealt out
round-robin (file ``i`` is family ``i % len(FAMILIES)``) and each family cycles through its
variants, so ``n >= len(FAMILIES)`` covers every family and ``n = 300`` every variant.

The MIDI bytes are written by hand (a tiny Standard MIDI File parser/writer on ``struct``) so
every byte is under control: the corruptions are ones a lenient writer would refuse to make.

    python tests/midifuzz.py OUT_DIR [--n 300] [--seed 0]     # write a corpus
    python tests/midifuzz.py --list                           # families and variants
"""

from __future__ import annotations

import json
import random
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path("/work/shared/data")
MAX_BYTES = 1_000_000
MAX_DELTA = 0x0FFFFFFF  # the largest delta a 4-byte variable-length quantity can hold

# ----------------------------------------------------------------------------- SMF bytes


def vlq(n: int) -> bytes:
    """Variable-length quantity (7 bits a byte, high bit = more follow); 0 <= n <= 0x0FFFFFFF."""
    if not 0 <= n <= MAX_DELTA:
        raise ValueError(f"VLQ out of range: {n}")
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def read_vlq(data: bytes, i: int) -> tuple[int, int]:
    n = 0
    for _ in range(4):
        b = data[i]
        i += 1
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            return n, i
    raise ValueError("VLQ longer than 4 bytes")


def chunk(kind: bytes, body: bytes, length: int | None = None) -> bytes:
    """A chunk; ``length`` overrides the declared length (the body is written as is)."""
    return kind + struct.pack(">I", len(body) if length is None else length & 0xFFFFFFFF) + body


def header(fmt: int, ntracks: int, division: int) -> bytes:
    return chunk(b"MThd", struct.pack(">HHH", fmt & 0xFFFF, ntracks & 0xFFFF, division & 0xFFFF))


def note_on(ch: int, pitch: int, vel: int) -> bytes:
    return bytes([0x90 | (ch & 15), pitch & 0xFF, vel & 0xFF])


def note_off(ch: int, pitch: int, vel: int = 64) -> bytes:
    return bytes([0x80 | (ch & 15), pitch & 0xFF, vel & 0xFF])


def program(ch: int, prog: int) -> bytes:
    return bytes([0xC0 | (ch & 15), prog & 0xFF])


def meta(kind: int, data: bytes, length: int | None = None) -> bytes:
    """A meta event; ``length`` overrides the declared length."""
    return bytes([0xFF, kind & 0xFF]) + vlq(len(data) if length is None else length) + data


def tempo(us_per_quarter: int) -> bytes:
    return meta(0x51, (us_per_quarter & 0xFFFFFF).to_bytes(3, "big"))


def timesig(num: int, den_exp: int, clocks: int = 24, n32: int = 8) -> bytes:
    return meta(0x58, bytes([num & 0xFF, den_exp & 0xFF, clocks & 0xFF, n32 & 0xFF]))


def keysig(sf: int, mi: int) -> bytes:
    return meta(0x59, bytes([sf & 0xFF, mi & 0xFF]))


EOT = meta(0x2F, b"")
FILLER = meta(0x01, b"")  # an empty text event: splits a gap longer than one delta can hold

Event = tuple[int, bytes]  # (delta ticks, complete event bytes with their status byte)


@dataclass
class Smf:
    fmt: int
    division: int  # the raw 16-bit field (SMPTE when the high bit is set)
    tracks: list[list[Event]] = field(default_factory=list)

    def copy(self) -> Smf:
        return Smf(self.fmt, self.division, [list(t) for t in self.tracks])


def parse(data: bytes) -> Smf:
    """Parse a well-formed SMF (running status expanded, end-of-track events dropped)."""
    if data[:4] != b"MThd":
        raise ValueError("no MThd")
    hlen = struct.unpack(">I", data[4:8])[0]
    fmt, ntracks, division = struct.unpack(">HHH", data[8:14])
    i = 8 + hlen
    smf = Smf(fmt, division)
    while i + 8 <= len(data) and len(smf.tracks) < ntracks:
        kind, length = data[i:i + 4], struct.unpack(">I", data[i + 4:i + 8])[0]
        body = data[i + 8:i + 8 + length]
        i += 8 + length
        if kind != b"MTrk":
            continue
        events, j, status = [], 0, None
        while j < len(body):
            delta, j = read_vlq(body, j)
            b = body[j]
            if b == 0xFF:
                kind_, (length_, k) = body[j + 1], read_vlq(body, j + 2)
                ev, j = body[j:k + length_], k + length_
                if kind_ == 0x2F:
                    events.append((delta, b""))  # keep the end's time, drop the event
                    break
            elif b in (0xF0, 0xF7):
                length_, k = read_vlq(body, j + 1)
                ev, j = body[j:k + length_], k + length_
                status = None
            else:
                if b & 0x80:
                    status, j = b, j + 1
                if status is None:
                    raise ValueError("running status without status")
                n = 1 if status >> 4 in (0xC, 0xD) else 2
                ev, j = bytes([status]) + body[j:j + n], j + n
            events.append((delta, ev))
        smf.tracks.append(events)
    return smf


def encode_track(events: list[Event], running_status: bool = False, eot: bool = True) -> bytes:
    """Track body bytes. Deltas above 0x0FFFFFFF are split with empty text events."""
    out = bytearray()
    last = None
    carry = 0  # time of bare advances (b"" events: the end-of-track time kept by parse)

    def advance(delta: int) -> int:
        nonlocal last
        while delta > MAX_DELTA:
            out.extend(vlq(MAX_DELTA) + FILLER)
            delta -= MAX_DELTA
            last = None
        return delta

    for delta, ev in events:
        if not ev:
            carry += delta
            continue
        delta, carry = advance(delta + carry), 0
        out += vlq(delta)
        st = ev[0]
        if running_status and st < 0xF0 and st == last:
            out += ev[1:]
        else:
            out += ev
        last = st if st < 0xF0 else None
    if eot:
        out += vlq(advance(carry)) + EOT
    return bytes(out)


def write(smf: Smf, running_status: bool = False, ntracks: int | None = None,
          fmt: int | None = None, division: int | None = None) -> bytes:
    body = b"".join(chunk(b"MTrk", encode_track(t, running_status)) for t in smf.tracks)
    return header(smf.fmt if fmt is None else fmt,
                  len(smf.tracks) if ntracks is None else ntracks,
                  smf.division if division is None else division) + body


def to_abs(track: list[Event]) -> list[list]:
    t, out = 0, []
    for delta, ev in track:
        t += delta
        out.append([t, ev])
    return out


def from_abs(events: list) -> list[Event]:
    events = sorted(events, key=lambda e: e[0])  # stable: same-tick order is kept
    out, prev = [], 0
    for t, ev in events:
        out.append((t - prev, ev))
        prev = t
    return out


def map_events(smf: Smf, fn) -> Smf:
    """Apply ``fn(abs_tick, event) -> list[(abs_tick, event)]`` to every event of every track."""
    new = smf.copy()
    new.tracks = [from_abs([list(e) for t, ev in to_abs(tr) for e in fn(t, ev)]) for tr in smf.tracks]
    return new


def is_note(ev: bytes) -> bool:
    return bool(ev) and ev[0] >> 4 in (8, 9)


def is_off(ev: bytes) -> bool:
    return bool(ev) and (ev[0] >> 4 == 8 or (ev[0] >> 4 == 9 and ev[2] == 0))


def tiny(events: list[Event], division: int = 480, fmt: int = 0, running_status: bool = False) -> bytes:
    """A one-track file."""
    return header(fmt, 1, division) + chunk(b"MTrk", encode_track(events, running_status))


def tpq(smf: Smf) -> int:
    return smf.division if 0 < smf.division < 0x8000 else 480


def end_tick(smf: Smf) -> int:
    return max((sum(d for d, _ in t) for t in smf.tracks), default=0)


def notes_abs(smf: Smf) -> list[tuple[int, int, bytes]]:
    return [(t, k, ev) for k, tr in enumerate(smf.tracks) for t, ev in to_abs(tr) if is_note(ev)]


def first_note_track(smf: Smf) -> int:
    return next((k for k, tr in enumerate(smf.tracks) if any(is_note(e) for _, e in tr)), 0)


# ----------------------------------------------------------------------------- families
# Each family: (variants, fn(rng, variant, src) -> (bytes, detail)). ``src`` is a Source
# (name, raw bytes, parsed Smf); the functions never change it.


@dataclass
class Source:
    name: str
    raw: bytes
    smf: Smf


def _pick(rng: random.Random, seq):
    return seq[rng.randrange(len(seq))]


def f_byte_flip(rng, v, src):
    data = bytearray(src.raw)
    k = {"few": rng.randint(1, 4), "many": rng.randint(20, 200), "header": rng.randint(1, 3),
         "data-bits": rng.randint(5, 50)}[v]
    if v == "data-bits":  # low bits of data bytes after the first track header: stays parseable
        start = src.raw.index(b"MTrk") + 8
        cands = [j for j in range(start, len(data)) if data[j] < 0x80]
        for _ in range(k):
            data[_pick(rng, cands)] ^= 1 << rng.randrange(7)
        return bytes(data), f"{k} flips of bits 0-6 in bytes < 0x80"
    for _ in range(k):
        pos = rng.randrange(22) if v == "header" else rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
    return bytes(data), f"{k} bit flips"


def f_byte_run(rng, v, src):
    data = bytearray(src.raw)
    n = rng.randint(1, 300)
    pos = rng.randrange(len(data))
    fill = {"random": lambda: rng.randrange(256), "ff": lambda: 0xFF, "00": lambda: 0,
            "80": lambda: 0x80}[v]
    for j in range(pos, min(pos + n, len(data))):
        data[j] = fill()
    return bytes(data), f"{n} bytes of {v} at {pos}"


def f_truncate(rng, v, src):
    cut = {"header": rng.randrange(1, 22), "early": rng.randrange(22, 200),
           "anywhere": rng.randrange(22, len(src.raw) - 1),
           "last-byte": len(src.raw) - 1}[v]
    return src.raw[:cut], f"cut at {cut} of {len(src.raw)}"


def f_garbage(rng, v, src):
    n = _pick(rng, [1, 3, 14, 22, 100, 1000, 60000])
    junk = bytes(rng.randrange(256) for _ in range(n))
    if v == "random":
        return junk, f"{n} random bytes"
    if v == "mthd-prefix":
        return b"MThd" + junk, f"'MThd' + {n} random bytes"
    # a valid header and an MTrk of random bytes of the right length
    return header(1, 1, 480) + chunk(b"MTrk", junk), f"MTrk of {n} random bytes"


def f_empty(rng, v, src):
    return {"zero-bytes": b"", "newline": b"\n", "magic-only": b"MThd",
            "nul": b"\0" * rng.randint(1, 64)}[v], v


def f_header_only(rng, v, src):
    nt = {"1-track": 1, "0-tracks": 0, "16-tracks": 16}[v]
    return header(1, nt, 480), f"MThd declaring {nt} tracks, nothing after"


def f_zero_tracks(rng, v, src):
    if v == "tracks-follow":
        return write(src.smf, ntracks=0), "ntracks=0 but the tracks follow"
    return write(src.smf, ntracks=0, fmt=0)[:14], "format 0, ntracks 0"


def f_more_tracks(rng, v, src):
    extra = {"plus-1": 1, "plus-100": 100, "65535": 65535 - len(src.smf.tracks)}[v]
    return write(src.smf, ntracks=len(src.smf.tracks) + extra), f"header says {extra} more tracks"


def f_format_2(rng, v, src):
    if v == "real":
        return write(src.smf, fmt=2), "format 2 (independent sequences)"
    return write(src.smf, fmt=2, running_status=True), "format 2 with running status"


def f_format_invalid(rng, v, src):
    if v == "format-0-many-tracks":
        return write(src.smf, fmt=0), "format 0 with several tracks"
    f = {"format-3": 3, "format-ffff": 0xFFFF}[v]
    return write(src.smf, fmt=f), f"format {f}"


def f_track_len_past_eof(rng, v, src):
    tracks = [encode_track(t) for t in src.smf.tracks]
    k = {"first": 0, "last": len(tracks) - 1, "huge": rng.randrange(len(tracks))}[v]
    extra = 0xFFFFFFFF - len(tracks[k]) if v == "huge" else rng.randint(1, 5000)
    body = b"".join(chunk(b"MTrk", t, len(t) + extra if i == k else None)
                    for i, t in enumerate(tracks))
    return header(src.smf.fmt, len(tracks), src.smf.division) + body, \
        f"track {k} declares {extra} bytes too many"


def f_track_len_short(rng, v, src):
    tracks = [encode_track(t) for t in src.smf.tracks]
    k = first_note_track(src.smf)
    short = {"zero": 0, "half": len(tracks[k]) // 2, "minus-1": len(tracks[k]) - 1}[v]
    body = b"".join(chunk(b"MTrk", t, short if i == k else None) for i, t in enumerate(tracks))
    return header(src.smf.fmt, len(tracks), src.smf.division) + body, \
        f"track {k} declares {short} of {len(tracks[k])} bytes"


def f_division(rng, v, src):
    div = int(v.split("-")[0])
    if v.endswith("rescaled"):
        old = tpq(src.smf)
        smf = map_events(src.smf, lambda t, ev: [(t * div // old, ev)])
        return write(smf, division=div), f"division {div}, ticks rescaled from {old}"
    return write(src.smf, division=div), f"division {div} (ticks unchanged, were {src.smf.division})"


def f_smpte(rng, v, src):
    div = int(v, 16)
    fps = -struct.unpack(">b", bytes([div >> 8]))[0]
    return write(src.smf, division=div), f"SMPTE division 0x{div:04X}: {fps} fps, {div & 0xFF} ticks/frame"


def f_huge_delta(rng, v, src):
    if v == "tiny-before":  # the 38-byte file
        return tiny([(MAX_DELTA, note_on(0, 60, 100)), (480, note_off(0, 60)), (0, b"")]), \
            "one note after 0x0FFFFFFF ticks"
    if v == "tiny-between":
        return tiny([(0, note_on(0, 60, 100)), (480, note_off(0, 60)),
                     (MAX_DELTA, note_on(0, 64, 100)), (480, note_off(0, 64))]), \
            "two notes 0x0FFFFFFF ticks apart"
    if v == "tiny-overflow":  # more than 2^31 ticks in all
        ev = []
        for k in range(9):
            ev += [(MAX_DELTA, note_on(0, 60 + k, 100)), (240, note_off(0, 60 + k))]
        return tiny(ev), "9 notes each 0x0FFFFFFF after the last (> 2^31 ticks)"
    smf = src.smf.copy()
    k = first_note_track(smf)
    tr = smf.tracks[k]
    idx = {"real-before": 0, "real-between": len(tr) // 2, "real-end": len(tr) - 1}[v]
    d, ev = tr[idx]
    tr[idx] = (d + MAX_DELTA, ev)
    return write(smf), f"0x0FFFFFFF added to delta of event {idx} of track {k}"


def f_far_notes(rng, v, src):
    n = {"2-notes": 2, "8-notes": 8, "16-notes": 16}[v]
    ev = []
    for k in range(n):  # onsets exactly 2^28 ticks apart (the gap is split by encode_track)
        ev += [(0 if k == 0 else (1 << 28) - 120, note_on(0, 60 + k, 90)), (120, note_off(0, 60 + k))]
    return tiny(ev), f"{n} notes 2^28 ticks apart"


def f_long_note(rng, v, src):
    smf = src.smf.copy()
    k = first_note_track(smf)
    dur = {"2^28": MAX_DELTA, "2^30": 4 * MAX_DELTA, "2^31+": 9 * MAX_DELTA}[v]
    ab = to_abs(smf.tracks[k])
    ab += [[0, note_on(0, 72, 100)], [dur, note_off(0, 72)]]
    smf.tracks[k] = from_abs([e for e in ab if e[1]])
    return write(smf), f"real music plus one note lasting {dur} ticks"


def f_no_note_off(rng, v, src):
    if v == "tiny":
        return tiny([(0 if i == 0 else 240, note_on(0, 60 + i % 12, 100)) for i in range(32)]), \
            "32 note-ons, no note-off"
    if v == "single":
        return tiny([(0, note_on(0, 60, 100))]), "one note-on, nothing else"
    smf = map_events(src.smf, lambda t, ev: [] if is_off(ev) else [(t, ev)])
    return write(smf), "real music with every note-off removed"


def _with_meta_at_start(src: Source, events: list[bytes], drop: int | None = None) -> Smf:
    """Drop meta events of type ``drop`` and put ``events`` at tick 0 of track 0."""
    smf = map_events(src.smf, lambda t, ev: [] if drop is not None and ev[:2] == bytes([0xFF, drop])
                     else [(t, ev)])
    smf.tracks[0] = [(0, e) for e in events] + smf.tracks[0]
    return smf


def f_tempo_extreme(rng, v, src):
    if v == "alternating":
        smf = map_events(src.smf, lambda t, ev: [] if ev[:2] == b"\xff\x51" else [(t, ev)])
        end = end_tick(smf)
        step = max(end // 400, 1)
        smf.tracks[0] = from_abs([list(e) for e in to_abs(smf.tracks[0])] +
                                 [[t, tempo(1 if (t // step) % 2 else 0xFFFFFF)]
                                  for t in range(0, end, step)])
        return write(smf), f"tempo alternating 1 / 0xFFFFFF us every {step} ticks"
    if v.startswith("len-"):
        n = int(v[4:])
        return write(_with_meta_at_start(src, [meta(0x51, b"\x07" * n)], drop=0x51)), \
            f"tempo meta of length {n}"
    us = int(v, 0)
    return write(_with_meta_at_start(src, [tempo(us)], drop=0x51)), f"tempo {us} us/quarter"


def f_timesig_garbage(rng, v, src):
    num, den = {"num-0": (0, 2), "den-exp-0": (4, 0), "den-exp-10": (4, 10),
                "den-exp-31": (4, 31), "den-exp-255": (4, 255), "num-255": (255, 2),
                "both-0": (0, 0)}[v]
    ev = timesig(num, den)
    smf = _with_meta_at_start(src, [ev], drop=0x58)
    if rng.random() < 0.5:  # and again in the middle of the piece
        ab = to_abs(smf.tracks[0])
        ab.append([end_tick(smf) // 2, ev])
        smf.tracks[0] = from_abs(ab)
    return write(smf), f"time signature {num}/2^{den}"


def f_timesig_many(rng, v, src):
    n = {"200": 200, "1000": 1000, "5000": 5000}[v]
    smf = map_events(src.smf, lambda t, ev: [] if ev[:2] == b"\xff\x58" else [(t, ev)])
    end = max(end_tick(smf), 1)
    ab = to_abs(smf.tracks[0])
    for _ in range(n):
        if rng.random() < 0.9:
            ts = timesig(rng.randint(1, 16), rng.randint(0, 5))
        else:
            ts = timesig(rng.randrange(256), rng.randrange(256))
        ab.append([rng.randrange(end) if rng.random() < 0.8 else 0, ts])
    smf.tracks[0] = from_abs(ab)
    return write(smf), f"{n} time-signature changes (10% garbage)"


def f_keysig_garbage(rng, v, src):
    if v == "values":
        evs = [keysig(rng.randrange(256), rng.randrange(256)) for _ in range(20)]
    elif v == "lengths":
        evs = [meta(0x59, bytes(rng.randrange(256) for _ in range(n))) for n in (0, 1, 3, 5, 200)]
    else:  # extremes
        evs = [keysig(-128, 0), keysig(127, 1), keysig(-8, 255), keysig(8, 2)]
    smf = src.smf.copy()
    end = max(end_tick(smf), 1)
    ab = to_abs(smf.tracks[0]) + [[rng.randrange(end), e] for e in evs]
    smf.tracks[0] = from_abs(ab)
    return write(smf), f"{len(evs)} garbage key signatures ({v})"


def f_many_tracks(rng, v, src):
    n = {"2000": 2000, "5000": 5000, "65535-empty": 65535}[v]
    tracks = []
    for k in range(n):
        if v == "65535-empty" and k % 1000:
            tracks.append(chunk(b"MTrk", vlq(0) + EOT))
            continue
        ch = k % 16
        tracks.append(chunk(b"MTrk", encode_track([
            (0, meta(0x03, f"t{k}".encode())), (0, program(ch, k % 128)),
            (k % 64 * 30, note_on(ch, 21 + k % 88, 80)), (240, note_off(ch, 21 + k % 88))])))
    return header(1, n, 480) + b"".join(tracks), f"{n} tracks"


def _many_notes(n: int, with_off: bool, chord: int = 1) -> bytes:
    """n notes with running status; delta 0 inside a chord, 60 ticks between chords."""
    body = bytearray(vlq(0) + bytes([0x90, 60, 100]))
    for i in range(1, n):
        p = 36 + (i * 7) % 60
        body += bytes([0 if i % chord else 60, p, 100])
        if with_off:
            body += bytes([30 if i % chord == chord - 1 else 0, p, 0])
    body += vlq(0) + EOT
    return header(0, 1, 480) + chunk(b"MTrk", bytes(body))


def f_many_notes(rng, v, src):
    if v == "20k":
        return _many_notes(20_000, True), "20,000 notes, running status"
    if v == "150k":
        return _many_notes(150_000, True), "150,000 notes with note-offs, running status"
    return _many_notes(300_000, False, chord=4), "300,000 note-ons (chords of 4), no note-off"


def f_huge_chord(rng, v, src):
    if v == "2048-distinct":
        ons = [(0, note_on(ch, p, 100)) for ch in range(16) for p in range(128)]
        offs = [(480 if i == 0 else 0, note_off(ch, p)) for i, (ch, p) in
                enumerate((ch, p) for ch in range(16) for p in range(128))]
        return tiny(ons + offs, running_status=True), "every channel x every pitch at once"
    if v == "5000-same-pitch":
        ons = [(0, note_on(0, 60, 100))] * 5000
        offs = [(480 if i == 0 else 0, note_off(0, 60)) for i in range(5000)]
        return tiny(ons + offs, running_status=True), "5000 note-ons of one pitch at tick 0"
    ev = []
    for beat in range(100):
        ev += [(0 if i else (480 if beat else 0), note_on(i % 16, 21 + i % 88, 90)) for i in range(600)]
        ev += [(0, note_off(i % 16, 21 + i % 88)) for i in range(600)]
    return tiny(ev, running_status=True), "100 chords of 600 notes"


def f_all_channels(rng, v, src):
    counter = iter(range(1 << 30))
    chans = {}

    def fn(t, ev):
        if not is_note(ev):
            return [(t, ev)]
        key = (ev[0] & 15, ev[1])
        if not is_off(ev):
            chans[key] = next(counter) % 16
        ch = chans.get(key, 0)
        return [(t, bytes([(ev[0] & 0xF0) | ch]) + ev[1:])]
    smf = map_events(src.smf, fn)
    smf.tracks[0] = [(0, program(ch, rng.randrange(128))) for ch in range(16)] + smf.tracks[0]
    return write(smf), "notes dealt round-robin over all 16 channels (incl. drums)"


def f_drums_only(rng, v, src):
    smf = map_events(src.smf, lambda t, ev: [(t, bytes([(ev[0] & 0xF0) | 9]) + ev[1:])]
                     if ev and 0x80 <= ev[0] < 0xF0 else [(t, ev)])
    if v == "gm-range":  # keep pitches inside the GM drum map
        smf = map_events(smf, lambda t, ev: [(t, ev[:1] + bytes([35 + ev[1] % 47]) + ev[2:])]
                         if is_note(ev) else [(t, ev)])
    return write(smf), f"everything on channel 10 ({v})"


def f_pitch_out_of_range(rng, v, src):
    def remap(p):
        if v == "low":
            return p % 21
        if v == "high":
            return 109 + p % 19
        return p % 21 if p % 2 else 109 + p % 19
    smf = map_events(src.smf, lambda t, ev: [(t, ev[:1] + bytes([remap(ev[1])]) + ev[2:])]
                     if is_note(ev) else [(t, ev)])
    return write(smf), f"every pitch outside 21..108 ({v})"


def f_velocity_zero(rng, v, src):
    def fn(t, ev):
        if not is_note(ev) or is_off(ev):
            return [(t, ev)]
        vel = 0 if v != "velocity-1" else 1
        return [(t, ev[:2] + bytes([vel]))]
    if v == "note-off-only":
        smf = map_events(src.smf, lambda t, ev: [(t, bytes([0x80 | (ev[0] & 15)]) + ev[1:])]
                         if is_note(ev) else [(t, ev)])
    else:
        smf = map_events(src.smf, fn)
    return write(smf), {"velocity-0": "every note-on has velocity 0",
                        "velocity-1": "every note-on has velocity 1",
                        "note-off-only": "every note-on turned into a note-off"}[v]


def f_empty_bars_middle(rng, v, src):
    bars = int(v)
    bar = 4 * tpq(src.smf)
    cut = end_tick(src.smf) // 2 // bar * bar
    shift = bars * bar
    held: dict = {}  # (track, channel, pitch) -> onsets before the cut still sounding

    def fn(k):
        def move(t, ev):
            if is_note(ev):
                key = (k, ev[0] & 15, ev[1])
                if not is_off(ev):
                    held.setdefault(key, []).append(t < cut)
                elif held.get(key):
                    if held[key].pop(0):  # a note that began before the cut ends where it did
                        return [(t, ev)]
            return [(t + shift if t >= cut else t, ev)]
        return move
    smf = src.smf.copy()
    smf.tracks = [from_abs([list(e) for t, ev in to_abs(tr) for e in fn(k)(t, ev)])
                  for k, tr in enumerate(src.smf.tracks)]
    return write(smf), f"{bars} empty bars inserted at tick {cut} (notes across the cut end there)"


def f_leading_silence(rng, v, src):
    bars = int(v)
    bar = 4 * tpq(src.smf)
    smf = map_events(src.smf, lambda t, ev: [(t + bars * bar if (is_note(ev) or not ev) else t, ev)])
    return write(smf), f"{bars} bars of silence before the first note"


def f_sysex_overrun(rng, v, src):
    smf = src.smf.copy()
    if v.startswith("tiny"):
        st = 0xF0 if v == "tiny-f0" else 0xF7
        body = vlq(0) + note_on(0, 60, 100)[:3] + vlq(10) + bytes([st]) + vlq(5000) + b"\x7e\x7f"
        return header(0, 1, 480) + chunk(b"MTrk", body), f"sysex 0x{st:02X} of length 5000, 2 bytes present"
    k = first_note_track(smf)
    half = len(smf.tracks[k]) // 2
    a = encode_track(smf.tracks[k][:half], eot=False)
    b = encode_track(smf.tracks[k][half:])
    body = a + vlq(0) + b"\xf0" + vlq(MAX_DELTA) + b"\x43\x10" + b
    tracks = [encode_track(t) if i != k else body for i, t in enumerate(smf.tracks)]
    return header(smf.fmt, len(tracks), smf.division) + b"".join(chunk(b"MTrk", t) for t in tracks), \
        f"sysex of length 0x0FFFFFFF in the middle of track {k}"


def f_meta_overrun(rng, v, src):
    kind = {"text": 0x01, "tempo": 0x51, "eot": 0x2F, "name": 0x03}[v]
    length = rng.choice([10_000, MAX_DELTA])
    smf = src.smf.copy()
    k = first_note_track(smf)
    half = len(smf.tracks[k]) // 2
    body = encode_track(smf.tracks[k][:half], eot=False) + vlq(0) + bytes([0xFF, kind]) + \
        vlq(length) + b"abc"
    tracks = [encode_track(t) for t in smf.tracks[:k]] + [body]
    return header(smf.fmt, len(tracks), smf.division) + b"".join(chunk(b"MTrk", t) for t in tracks), \
        f"meta 0x{kind:02X} of length {length} at the end of the file"


def f_unknown_meta(rng, v, src):
    smf = src.smf.copy()
    end = max(end_tick(smf), 1)
    kinds = {"reserved": list(range(0x0A, 0x20)) + list(range(0x60, 0x7F)),
             "sequencer": [0x7F], "high": list(range(0x80, 0x100))}[v]
    k = first_note_track(smf)
    ab = to_abs(smf.tracks[k])
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 5, 300])))
        ab.append([rng.randrange(end), meta(_pick(rng, kinds), data)])
    smf.tracks[k] = from_abs(ab)
    return write(smf), f"200 meta events of unknown types ({v})"


def f_orphan_running_status(rng, v, src):
    if v == "track-start":
        body = vlq(0) + bytes([60, 100]) + vlq(240) + bytes([60, 0]) + vlq(0) + EOT
        return header(0, 1, 480) + chunk(b"MTrk", body), "data bytes before any status byte"
    if v == "after-meta":  # running status is cancelled by meta/sysex in the spec
        body = (vlq(0) + note_on(0, 60, 100) + vlq(0) + meta(0x01, b"x") + vlq(240) + bytes([60, 0])
                + vlq(0) + b"\xf0" + vlq(1) + b"\xf7" + vlq(0) + bytes([64, 100]) + vlq(240)
                + bytes([64, 0]) + vlq(0) + EOT)
        return header(0, 1, 480) + chunk(b"MTrk", body), "running status after meta / sysex"
    smf = src.smf.copy()  # the real file, each track's first status byte removed
    tracks = []
    for t in smf.tracks:
        body = bytearray(encode_track(t, running_status=True))
        for j in range(len(body)):
            if 0x80 <= body[j] < 0xF0:
                del body[j]
                break
        tracks.append(bytes(body))
    return header(smf.fmt, len(tracks), smf.division) + b"".join(chunk(b"MTrk", t) for t in tracks), \
        "first channel status byte of each track removed (running status)"


def f_data_high_bit(rng, v, src):
    smf = src.smf.copy()
    k = first_note_track(smf)
    end = max(end_tick(smf), 1)
    ab = to_abs(smf.tracks[k])
    bad = {"control-168": lambda: bytes([0xB0, 168, 64]),
           "pitch-200": lambda: bytes([0x90, 200, 100]),
           "velocity-255": lambda: bytes([0x90, 60, 255]),
           "pitchbend-ff": lambda: bytes([0xE0, 0xFF, 0xFF])}[v]
    for _ in range(20):
        ab.append([rng.randrange(end), bad()])
    smf.tracks[k] = from_abs(ab)
    return write(smf), f"20 channel messages with a data byte >= 0x80 ({v})"


def f_vlq_overlong(rng, v, src):
    if v == "5-bytes":
        d = b"\xff\xff\xff\xff\x7f"
    elif v == "endless":
        d = b"\x80" * 100_000
    else:  # the file ends inside a VLQ
        return header(0, 1, 480) + chunk(b"MTrk", vlq(0) + note_on(0, 60, 90) + b"\x81\x82"), \
            "the file ends inside a delta"
    body = vlq(0) + note_on(0, 60, 90) + d + note_off(0, 60) + vlq(0) + EOT
    return header(0, 1, 480) + chunk(b"MTrk", body), f"a delta encoded as {len(d)} bytes"


def f_chunk_junk(rng, v, src):
    tracks = [chunk(b"MTrk", encode_track(t)) for t in src.smf.tracks]
    hdr = header(src.smf.fmt, len(tracks), src.smf.division)
    if v == "unknown-chunks":
        junk = chunk(b"XFIH", bytes(rng.randrange(256) for _ in range(50)))
        return hdr + junk + b"".join(t + junk for t in tracks), "unknown chunks between tracks"
    if v == "rmid":
        smf_bytes = hdr + b"".join(tracks)
        data = b"RMID" + chunk(b"data", smf_bytes)
        return b"RIFF" + struct.pack("<I", len(data)) + data, "RIFF RMID wrapper"
    if v == "no-eot":
        body = b"".join(chunk(b"MTrk", encode_track(t, eot=False)) for t in src.smf.tracks)
        return hdr + body, "no end-of-track events"
    if v == "after-eot":
        body = b"".join(chunk(b"MTrk", encode_track(t) + vlq(0) + note_on(0, 60, 100) +
                              vlq(MAX_DELTA) + note_off(0, 60)) for t in src.smf.tracks)
        return hdr + body, "events after end-of-track"
    # header chunk longer than 6 bytes
    return chunk(b"MThd", struct.pack(">HHH", src.smf.fmt, len(tracks), src.smf.division)
                 + b"\0" * 10) + b"".join(tracks), "MThd of length 16"


def f_text_garbage(rng, v, src):
    smf = src.smf.copy()
    if v == "invalid-utf8":
        evs = [meta(k, bytes(rng.randrange(128, 256) for _ in range(40))) for k in (1, 2, 3, 4, 5, 6)]
    elif v == "huge-text":
        evs = [meta(0x05, b"la " * 200_000)]
    else:  # NUL bytes and control characters in names
        evs = [meta(0x03, b"\0\x01\x1b[2J\n\r" * 10), meta(0x04, b"\0" * 100)]
    smf.tracks[0] = [(0, e) for e in evs] + smf.tracks[0]
    return write(smf), f"text events: {v}"


def f_controller_flood(rng, v, src):
    """100,000 controller-type events (and a note every 1000) in a track of their own."""
    n = 100_000
    status = {"control": 0xB0, "pitch-bend": 0xE0, "aftertouch": 0xA0}[v]
    step = max(end_tick(src.smf) // n, 0)
    d = vlq(step)
    if status == 0xB0:
        data = [bytes([i % 120, i % 128]) for i in range(n)]
    elif status == 0xE0:
        data = [bytes([i % 128, (i * 7) % 128]) for i in range(n)]
    else:
        data = [bytes([60, i % 128]) for i in range(n)]
    parts = [vlq(0), bytes([status]), data[0]]
    for i in range(1, n):
        if i % 1000 == 0:  # a short note now and then, so the track is kept; then the status again
            parts += [d, note_on(0, 48 + i // 1000 % 36, 90), vlq(0), bytes([48 + i // 1000 % 36, 0]),
                      vlq(0), bytes([status]), data[i]]
        else:
            parts += [d, data[i]]
    body = b"".join(parts) + vlq(0) + EOT
    tracks = [chunk(b"MTrk", encode_track(t)) for t in src.smf.tracks] + [chunk(b"MTrk", body)]
    return header(1, len(tracks), src.smf.division) + b"".join(tracks), \
        f"{n} {v} events (running status) in a track of their own, every {step} ticks"


def f_overlap_same_pitch(rng, v, src):
    if v == "nested":
        ev = [(0, note_on(0, 60, 100)), (10, note_on(0, 60, 90)), (10, note_on(0, 60, 80)),
              (100, note_off(0, 60)), (100, note_off(0, 60)), (100, note_off(0, 60))]
        return tiny(ev * 50), "the same pitch struck three times before any note-off"
    if v == "off-before-on":
        ev = [(0, note_off(0, 60)), (0, note_on(0, 60, 100)), (0, note_off(0, 60))] * 200
        return tiny(ev), "note-off, note-on, note-off at the same tick"
    smf = map_events(src.smf, lambda t, ev: [(t, ev), (t, ev)] if is_note(ev) else [(t, ev)])
    return write(smf), "every note event doubled"


FAMILY_TABLE: dict[str, tuple[list[str], object]] = {
    "byte-flip": (["few", "data-bits", "many", "header"], f_byte_flip),
    "byte-run": (["random", "ff", "00", "80"], f_byte_run),
    "truncate": (["anywhere", "header", "early", "last-byte"], f_truncate),
    "garbage": (["random", "mthd-prefix", "mtrk-body"], f_garbage),
    "empty": (["zero-bytes", "magic-only", "newline", "nul"], f_empty),
    "header-only": (["1-track", "0-tracks", "16-tracks"], f_header_only),
    "zero-tracks": (["tracks-follow", "header-only"], f_zero_tracks),
    "more-tracks": (["plus-1", "plus-100", "65535"], f_more_tracks),
    "format-2": (["real", "running-status"], f_format_2),
    "format-invalid": (["format-3", "format-0-many-tracks", "format-ffff"], f_format_invalid),
    "track-len-past-eof": (["last", "first", "huge"], f_track_len_past_eof),
    "track-len-short": (["half", "zero", "minus-1"], f_track_len_short),
    "division": (["0", "1", "2", "32767", "1-rescaled", "32767-rescaled", "0-rescaled",
                  "2-rescaled"], f_division),
    "smpte": (["E728", "E250", "E300", "8001", "FF01", "E800"], f_smpte),
    "huge-delta": (["tiny-before", "real-between", "tiny-between", "real-before", "tiny-overflow",
                    "real-end"], f_huge_delta),
    "far-notes": (["2-notes", "8-notes", "16-notes"], f_far_notes),
    "long-note": (["2^28", "2^30", "2^31+"], f_long_note),
    "no-note-off": (["real", "tiny", "single"], f_no_note_off),
    "tempo-extreme": (["0", "1", "0xFFFFFF", "alternating", "len-0", "len-2"], f_tempo_extreme),
    "timesig-garbage": (["num-0", "den-exp-0", "den-exp-10", "den-exp-31", "den-exp-255",
                         "num-255", "both-0"], f_timesig_garbage),
    "timesig-many": (["200", "1000", "5000"], f_timesig_many),
    "keysig-garbage": (["values", "lengths", "extremes"], f_keysig_garbage),
    "many-tracks": (["2000", "5000", "65535-empty"], f_many_tracks),
    "many-notes": (["20k", "150k", "300k-no-off"], f_many_notes),
    "huge-chord": (["2048-distinct", "5000-same-pitch", "100x600"], f_huge_chord),
    "all-channels": (["real"], f_all_channels),
    "drums-only": (["any-pitch", "gm-range"], f_drums_only),
    "pitch-out-of-range": (["both", "low", "high"], f_pitch_out_of_range),
    "velocity-zero": (["velocity-0", "note-off-only", "velocity-1"], f_velocity_zero),
    "empty-bars-middle": (["1000", "100", "5000", "30000"], f_empty_bars_middle),
    "leading-silence": (["1000", "5000", "30000", "100"], f_leading_silence),
    "sysex-overrun": (["tiny-f0", "real", "tiny-f7"], f_sysex_overrun),
    "meta-overrun": (["text", "tempo", "eot", "name"], f_meta_overrun),
    "unknown-meta": (["reserved", "sequencer", "high"], f_unknown_meta),
    "orphan-running-status": (["track-start", "real", "after-meta"], f_orphan_running_status),
    "data-high-bit": (["control-168", "pitch-200", "velocity-255", "pitchbend-ff"], f_data_high_bit),
    "vlq-overlong": (["5-bytes", "endless", "eof-inside"], f_vlq_overlong),
    "chunk-junk": (["unknown-chunks", "rmid", "no-eot", "after-eot", "long-mthd"], f_chunk_junk),
    "text-garbage": (["invalid-utf8", "huge-text", "control-chars"], f_text_garbage),
    "controller-flood": (["control", "pitch-bend", "aftertouch"], f_controller_flood),
    "overlap-same-pitch": (["nested", "doubled", "off-before-on"], f_overlap_same_pitch),
}
FAMILIES: list[str] = list(FAMILY_TABLE)


# ----------------------------------------------------------------------------- corpus


def default_sources(seed: int = 0, n_pop: int = 3, n_nott: int = 3) -> list[Path]:
    """A few POP909 and Nottingham files (small ones, so most of the corpus stays small)."""
    out = []
    for folder, k in (("pop909", n_pop), ("nottingham", n_nott)):
        files = sorted((DATA / folder).glob("*.mid"))
        files = [f for f in files if f.stat().st_size < 60_000] or files
        rng = random.Random(f"{seed}-{folder}")
        out += sorted(rng.sample(files, min(k, len(files))))
    return out


def load_sources(paths: list[Path]) -> list[Source]:
    srcs = []
    for p in paths:
        raw = Path(p).read_bytes()
        smf = parse(raw)
        if not smf.tracks or not notes_abs(smf):
            raise ValueError(f"source {p} has no notes")
        srcs.append(Source(Path(p).name, raw, smf))
    return srcs


def make_file(i: int, seed: int, sources: list[Source]) -> tuple[str, str, bytes, dict]:
    """File ``i`` of the corpus: (family, variant, bytes, manifest entry)."""
    family = FAMILIES[i % len(FAMILIES)]
    variants, fn = FAMILY_TABLE[family]
    variant = variants[(i // len(FAMILIES)) % len(variants)]
    rng = random.Random(f"midifuzz-{seed}-{i}")
    src = sources[rng.randrange(len(sources))]
    data, detail = fn(rng, variant, src)
    if len(data) >= MAX_BYTES:  # never expected; a guard so the "< 1 MB" claim holds
        raise AssertionError(f"{family}/{variant} made {len(data)} bytes")
    entry = {"family": family, "variant": variant, "source": src.name, "bytes": len(data),
             "detail": detail}
    return family, variant, data, entry


def file_name(i: int, family: str, variant: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in variant)
    return f"{i:04d}-{family}--{safe}.mid"


def build_corpus(out_dir: Path, n: int, seed: int = 0, sources: list[Path] | None = None) -> list[Path]:
    """Write ``n`` hostile MIDI files (and ``manifest.json``) into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    srcs = load_sources(sources if sources is not None else default_sources(seed))
    paths, manifest = [], {}
    for i in range(n):
        family, variant, data, entry = make_file(i, seed, srcs)
        path = out_dir / file_name(i, family, variant)
        path.write_bytes(data)
        paths.append(path)
        manifest[path.name] = entry
    (out_dir / "manifest.json").write_text(json.dumps(
        {"seed": seed, "n": n, "sources": [s.name for s in srcs], "files": manifest}, indent=1))
    return paths


def family_of(path: str | Path) -> str:
    """The family from a corpus file name (``0042-huge-delta--tiny-before.mid`` -> huge-delta)."""
    stem = Path(path).name.split(".")[0]
    return stem.split("-", 1)[1].split("--")[0]


def describe(path: str | Path) -> str:
    """One line about a corpus file, from the manifest beside it."""
    path = Path(path)
    mf = path.parent / "manifest.json"
    if mf.is_file():
        e = json.loads(mf.read_text())["files"].get(path.name)
        if e:
            return f"{e['family']}/{e['variant']}: {e['detail']} (from {e['source']}, {e['bytes']} bytes)"
    return family_of(path)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import time

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", type=Path)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--list", action="store_true", help="print families and variants")
    a = p.parse_args(argv)
    if a.list or a.out is None:
        for f, (vs, _) in FAMILY_TABLE.items():
            print(f"{f:24s} {', '.join(vs)}")
        return 0
    t = time.perf_counter()
    paths = build_corpus(a.out, a.n, a.seed)
    sizes = [p.stat().st_size for p in paths]
    print(f"wrote {len(paths)} files to {a.out} in {time.perf_counter() - t:.2f}s; "
          f"median {sorted(sizes)[len(sizes) // 2]} bytes, max {max(sizes)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
