"""mtvae studio: a local web page (Gradio) that makes music with one model.

``mtvae studio RUN_DIR`` (or ``pretrained``) serves it on 127.0.0.1. The page is a thin layer
over ``MusicVAE``: Sample, Continue, Infill, Transfer and Interpolate, each result drawn as a
piano roll, played (FluidSynth, or the built-in synthesiser) and offered as a MIDI download,
and kept in this tab's list of results, from which any piece can be played again or fed back
as a song to edit.

As a server: the model is loaded once; every generation runs in Gradio's worker threads
behind one queue (``QUEUE_SIZE`` waiting at most), never on the event loop: Sample requests of
all tabs are decoded together in batches of up to ``MAX_BATCH`` pieces (``Batcher``; each
piece as it would come out alone), the other tasks ``CONCURRENCY`` at a time; each browser
tab has its own results (``gr.State``); uploads are refused above
``MAX_UPLOAD_BYTES``, when they are not MIDI, or when mtvae cannot read them, with one line on
the page; bars and pieces per request are bounded (``MAX_BARS``, ``MAX_STEPS``).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .api import MusicVAE
from .errors import UserError

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_BARS = 32  # bars per request (sample, continue, interpolate)
MAX_STEPS = 8  # interpolation steps per request
MAX_RESULTS = 40  # results kept per tab (the oldest go)
QUEUE_SIZE = 16  # requests waiting, all tabs together; more are refused with a message
CONCURRENCY = 2  # generations at a time besides samples' batches; each on cores // CONCURRENCY
# torch threads (one on 2 cores: a decode on 2 threads while a piece is rendered beside it
# waits on its descheduled thread; bench/studio_load.py: 1.7x the pieces served)
MAX_BATCH = 4  # pieces of several tabs' Sample requests decoded as one batch
BATCH_WAIT_S = 0.05  # a batch waits this long for companions before it starts, and ...
BATCH_LINGER_S = 1.0  # ... up to this long while pieces of other requests are being drawn
BATCH_RETURN_S = 0.3  # or were drawn this recently (their tabs ask again in a moment: under
# load the batches fill up; a lone request waits only BATCH_WAIT_S)
MIDI_SUFFIXES = (".mid", ".midi")

log = logging.getLogger("mtvae.studio")


@dataclass(frozen=True)
class Piece:
    """One result of this tab: its files and how it was made."""

    number: int  # 1, 2, ... in this tab (never reused, also when old pieces go)
    name: str
    midi: str
    roll: str
    wav: str | None
    how: str


class Batcher:
    """Sample requests of several tabs decoded together: pieces decode as one batch almost as
    fast as one alone (a step reads the weights once for every row), so under load pieces
    come out sooner than one request after another. Each piece keeps its own seed (its own
    random streams); requests wait for the batch in progress, then ``wait_s`` for companions,
    longer (up to ``linger_s``) while other requests' pieces are being drawn (``drawing``),
    and only requests with the same sampling settings share a batch. The first waiting thread
    decodes the batch for all of them (no thread of its own)."""

    def __init__(self, vae: MusicVAE, max_pieces: int = MAX_BATCH, wait_s: float = BATCH_WAIT_S,
                 linger_s: float = BATCH_LINGER_S):
        self.vae, self.max_pieces = vae, max_pieces
        self.wait_s, self.linger_s = wait_s, linger_s
        self.cond = threading.Condition()
        self.pending: list[dict] = []
        self.busy = False
        self.drawing = 0  # requests whose pieces are being rendered (they will be back)
        self.drawn_at = -1e9  # when the last one was rendered
        self.sizes: list[int] = []  # pieces per batch decoded so far (bench/studio_load.py)

    @contextmanager
    def draw(self):
        """A context for rendering a decoded piece: batches wait for such requests."""
        with self.cond:
            self.drawing += 1
        try:
            yield
        finally:
            with self.cond:
                self.drawing -= 1
                self.drawn_at = time.monotonic()
                self.cond.notify_all()

    def _gather(self) -> None:
        """(Holding the lock) wait for companions: ``wait_s``, then while requests are being
        drawn (or were, within ``BATCH_RETURN_S``) and the batch is not full, up to
        ``linger_s`` in all."""
        start = time.monotonic()
        while True:
            now = time.monotonic()
            waited = now - start
            full = sum(len(j["plans"]) for j in self.pending) >= self.max_pieces
            coming = self.drawing or now - self.drawn_at < BATCH_RETURN_S
            if full or waited >= self.linger_s or (waited >= self.wait_s and not coming):
                return
            self.cond.wait(max(self.wait_s - waited, 0.01) if waited < self.wait_s else 0.02)

    @staticmethod
    def key(s) -> tuple:
        return (s.temperature, s.top_k, s.top_p, s.guidance, s.max_bar_tokens)

    def decode(self, plans: list, sampling) -> list:
        job = {"key": self.key(sampling), "plans": plans, "sampling": sampling,
               "done": False}
        with self.cond:
            self.pending.append(job)
            self.cond.notify_all()
            while not job["done"]:
                if self.busy:
                    self.cond.wait()
                    continue
                if not self.pending:  # (never: a job leaves pending only into a batch)
                    raise RuntimeError("a sample request was lost")
                self.busy = True  # this thread decodes the next batch (maybe not its own)
                self._gather()
                batch = self._take()
                self.cond.release()
                try:
                    self._run(batch)
                finally:
                    self.cond.acquire()
                    self.busy = False
                    self.cond.notify_all()
        if "error" in job:
            raise job["error"]
        return job["scores"]

    def _take(self) -> list[dict]:
        """The oldest job and the jobs after it with its settings, up to max_pieces plans."""
        first = self.pending[0]
        batch, n = [], 0
        for job in list(self.pending):
            if job["key"] == first["key"] and (not batch or n + len(job["plans"]) <= self.max_pieces):
                batch.append(job)
                n += len(job["plans"])
                self.pending.remove(job)
        return batch

    def _run(self, batch: list[dict]) -> None:
        try:
            self.sizes.append(sum(len(job["plans"]) for job in batch))
            scores = self.vae.decode([p for job in batch for p in job["plans"]],
                                     batch[0]["sampling"])
            for job in batch:
                job["scores"], scores = scores[:len(job["plans"])], scores[len(job["plans"]):]
        except BaseException as e:  # noqa: BLE001 - every waiting request gets the failure
            for job in batch:
                job["error"] = e
        finally:
            for job in batch:
                job["done"] = True


class Studio:
    """What the page calls: each method takes the form's values and this tab's pieces, and
    returns the new piece and the new list (``UserError`` for anything the user can fix)."""

    def __init__(self, vae: MusicVAE, workdir: str | os.PathLike):
        self.vae = vae
        self.batcher = Batcher(vae)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ inputs
    def song(self, path, what: str = "song"):
        """An uploaded file's path once mtvae has read it, with the bars it read
        (``EncodedInput``), or a one-line refusal."""
        if not path:
            raise UserError(f"upload a MIDI file as the {what} first")
        p = Path(path)
        if p.suffix.lower() not in MIDI_SUFFIXES:
            raise UserError(f"the {what} must be a MIDI file (.mid or .midi), not {p.suffix or 'a file without a suffix'}")
        size = p.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            raise UserError(f"the {what} is {size / 2**20:.1f} MB; the studio takes MIDI files "
                            f"up to {MAX_UPLOAD_BYTES // 2**20} MB")
        try:
            return str(p), self.vae.read(p)
        except UserError as e:  # name the upload as the user knows it, not the server's path
            raise UserError(str(e).replace(str(p), p.name)) from None

    @staticmethod
    def curve(text: str | None, what: str) -> list[int] | None:
        """A per-bar class curve typed as numbers ("0 1 2 3", "0,2,4"); blank: drawn."""
        if not text or not text.strip():
            return None
        parts = [t for t in re.split(r"[\s,;]+", text.strip()) if t]
        try:
            return [int(t) for t in parts]
        except ValueError:
            raise UserError(f"the {what} curve is whole numbers, one per bar (e.g. 0 1 2 3), "
                            f"not {text.strip()!r}") from None

    @staticmethod
    def sampling(temperature: float, top_p: float, guidance: float | None, seed) -> dict:
        s = {"temperature": float(temperature),
             "top_p": None if top_p is None or float(top_p) >= 1.0 else float(top_p)}
        if guidance is not None:
            s["guidance"] = float(guidance)
        if seed not in (None, ""):
            s["seed"] = int(seed)
        return s

    @staticmethod
    def bars(value, what: str = "bars", hi: int = MAX_BARS) -> int:
        n = int(value)
        if not 1 <= n <= hi:
            raise UserError(f"{what}: 1 to {hi} in the studio, not {n}")
        return n

    # ------------------------------------------------------------------ outputs
    def keep(self, score, how: str, pieces: list[Piece], shade=None) -> tuple[Piece, list[Piece]]:
        from .render import check_drawable, piano_roll, write_wav

        n = pieces[-1].number + 1 if pieces else 1
        kind, _, detail = how.partition(": ")
        stem = self.workdir / uuid.uuid4().hex / f"{n:02d}-{kind}"  # the download's name
        stem.parent.mkdir(parents=True)
        midi = str(stem.with_suffix(".mid"))
        score.dump_midi(midi)
        piece_name = f"{n}. {kind}"
        roll = str(stem.with_suffix(".png"))
        piano_roll(score, roll, piece_name, shade)
        wav = None
        try:
            check_drawable(score, wav=True)
            wav = str(stem.with_suffix(".wav"))
            write_wav(score, wav, quiet=True)
        except UserError as e:
            log.info("no audio for %s: %s", piece_name, e)
        piece = Piece(n, piece_name, midi, roll, wav, detail)
        return piece, (pieces + [piece])[-MAX_RESULTS:]

    # ------------------------------------------------------------------ tasks
    def sample(self, pieces, genre, bars, meter, rhythm, polyphony, **s):
        bars = self.bars(bars)
        plans, sampling = self.vae.sample_plans(bars=bars, genre=genre or None,
                                                meter=meter or None,
                                                rhythm=self.curve(rhythm, "rhythm"),
                                                polyphony=self.curve(polyphony, "polyphony"), **s)
        score = self.batcher.decode(plans, sampling)[0]
        with self.batcher.draw():
            return self.keep(score, f"sample: {bars} bars, {genre or 'any genre'}, "
                             f"{meter or 'default meter'}", pieces)

    def continue_(self, pieces, song, bars, **s):
        song, enc = self.song(song)
        bars = self.bars(bars)
        score = self.vae.continue_(song, bars=bars, **s)
        n = len(enc.bar_starts)
        return self.keep(score, f"continue: {bars} bars after {Path(song).name}", pieces,
                         shade=[(n, n + bars)])

    def infill(self, pieces, song, ranges, like, **s):
        song, _ = self.song(song)
        if not ranges or not str(ranges).strip():
            raise UserError("say which bars to rewrite, e.g. 9-12 or 3-4,11-12")
        like = self.song(like, "second song")[0] if like else None
        score = self.vae.infill(song, str(ranges).strip(), like=like, **s)
        shade = []
        for part in str(ranges).split(","):
            a, _, b = part.strip().partition("-")
            if a.strip().isdigit():
                shade.append((int(a) - 1, int(b or a)))
        return self.keep(score, f"infill: bars {ranges} of {Path(song).name}"
                         + (f", like {Path(like).name}" if like else ""), pieces, shade=shade)

    def transfer(self, pieces, song, genre, rhythm_shift, polyphony_shift, bars, **s):
        song, _ = self.song(song)
        bars = self.bars(bars)
        score = self.vae.transfer(song, genre=genre or None, rhythm_shift=int(rhythm_shift),
                                  polyphony_shift=int(polyphony_shift), bars=bars, **s)
        return self.keep(score, f"transfer: {Path(song).name} to {genre or 'its genre'}, "
                         f"rhythm {int(rhythm_shift):+d}, polyphony {int(polyphony_shift):+d}",
                         pieces)

    def interpolate(self, pieces, song, other, steps, bars, **s):
        (song, _), (other, _) = self.song(song), self.song(other, "second song")
        steps, bars = self.bars(steps, "steps", MAX_STEPS), self.bars(bars)
        if steps < 2:
            raise UserError("steps: at least 2 (the two songs' own latents)")
        piece = None
        for i, score in enumerate(self.vae.interpolate(song, other, steps=steps, bars=bars, **s)):
            t = i / (steps - 1)
            piece, pieces = self.keep(score, f"interpolate: t={t:.2f} from {Path(song).name} "
                                      f"to {Path(other).name}", pieces)
        return piece, pieces


# ---------------------------------------------------------------------------- the page
def build(vae: MusicVAE, workdir: str | os.PathLike | None = None,
          concurrency: int = CONCURRENCY):
    """The Gradio Blocks of the page (not launched); ``concurrency``: generations at a time
    (each then gets cores // concurrency torch threads)."""
    import gradio as gr

    vae.progress = True  # generation's tqdm bar, which gr.Progress(track_tqdm=True) follows
    studio = Studio(vae, workdir or tempfile.mkdtemp(prefix="mtvae-studio-"))
    genres = [g for g in vae.genres if g != "unknown"] or vae.genres
    meters = vae.meters
    title = f"mtvae studio: {vae.run_dir}"

    def show(piece: Piece | None):
        if piece is None:
            return None, None, None, ""
        return piece.roll, piece.wav, piece.midi, f"**{piece.name}**: {piece.how}"

    def listing(pieces):
        return gr.update(choices=[p.name for p in pieces],
                         value=pieces[-1].name if pieces else None)

    def task(method):
        def run(pieces, temperature, top_p, guidance, seed, *args,
                progress=gr.Progress(track_tqdm=True)):
            progress(0, desc="writing music")
            try:
                piece, pieces = method(list(pieces or []), *args,
                                       **Studio.sampling(temperature, top_p, guidance, seed))
            except UserError as e:
                raise gr.Error(str(e), print_exception=False) from None
            except Exception as e:  # a fault of ours: one line on the page, the trace in the log
                log.exception("studio request failed")
                raise gr.Error(f"something went wrong: {type(e).__name__}: {e}",
                               print_exception=False) from None
            return (pieces, listing(pieces), *show(piece))
        return run

    with gr.Blocks(title="mtvae studio") as demo:
        pieces = gr.State([])
        gr.Markdown(f"# {title}\nMake music with a Transformer VAE: each bar has a latent "
                    "you can sample, keep, interpolate or rewrite. Upload MIDI files "
                    f"(up to {MAX_UPLOAD_BYTES // 2**20} MB) to continue, infill, transfer or "
                    "interpolate them.")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    song = gr.File(label="Song (MIDI)", file_types=list(MIDI_SUFFIXES),
                                   elem_id="song")
                    other = gr.File(label="Second song (interpolate to; infill like)",
                                    file_types=list(MIDI_SUFFIXES), elem_id="other")
                with gr.Accordion("Sampling", open=False):
                    with gr.Row():
                        temperature = gr.Slider(0.0, 2.0, 1.0, step=0.05, label="Temperature")
                        top_p = gr.Slider(0.5, 1.0, 1.0, step=0.01, label="Top-p (1: off)")
                        guidance = gr.Slider(0.0, 3.0, 0.5, step=0.1,
                                             label="Latent guidance")
                        seed = gr.Number(None, precision=0, label="Seed (blank: random)")
                common = [pieces, temperature, top_p, guidance, seed]
                outputs = None  # filled below, once the result panel exists
                with gr.Tabs():
                    with gr.Tab("Sample"):
                        with gr.Row():
                            genre = gr.Dropdown(genres, value=genres[0], label="Genre")
                            bars = gr.Slider(1, MAX_BARS, 8, step=1, label="Bars",
                                             elem_id="bars")
                            meter = gr.Dropdown(meters, value=vae.default_meter(), label="Meter")
                        with gr.Row():
                            rhythm = gr.Textbox(label=f"Rhythm per bar (0-{vae.n_classes - 1}, "
                                                "blank: drawn)", placeholder="e.g. 1 2 3 4")
                            poly = gr.Textbox(label=f"Polyphony per bar (0-{vae.n_classes - 1}, "
                                              "blank: drawn)", placeholder="e.g. 0 0 4 4")
                        sample_btn = gr.Button("Sample", variant="primary", elem_id="sample")
                    with gr.Tab("Continue"):
                        cont_bars = gr.Slider(1, MAX_BARS, 8, step=1, label="New bars",
                                              elem_id="cont_bars")
                        cont_btn = gr.Button("Continue the song", variant="primary",
                                             elem_id="continue")
                    with gr.Tab("Infill"):
                        ranges = gr.Textbox(label="Bars to rewrite (numbered from 1)",
                                            value="5-6", elem_id="ranges")
                        use_like = gr.Checkbox(False, label="Rewrite them like the second song's bars")
                        infill_btn = gr.Button("Infill", variant="primary", elem_id="infill")
                    with gr.Tab("Transfer"):
                        with gr.Row():
                            t_genre = gr.Dropdown(genres, value=genres[0], label="Genre")
                            t_rhythm = gr.Slider(-(vae.n_classes - 1), vae.n_classes - 1, 0,
                                                 step=1, label="Rhythm shift")
                            t_poly = gr.Slider(-(vae.n_classes - 1), vae.n_classes - 1, 0,
                                               step=1, label="Polyphony shift")
                            t_bars = gr.Slider(1, MAX_BARS, 8, step=1, label="Bars")
                        transfer_btn = gr.Button("Transfer", variant="primary",
                                                 elem_id="transfer")
                    with gr.Tab("Interpolate"):
                        with gr.Row():
                            steps = gr.Slider(2, MAX_STEPS, 4, step=1,
                                              label="Steps from the song to the second song")
                            i_bars = gr.Slider(1, MAX_BARS, 4, step=1, label="Bars")
                        interp_btn = gr.Button("Interpolate", variant="primary",
                                               elem_id="interpolate")
            with gr.Column(scale=2):
                gr.Markdown("### Result")
                info = gr.Markdown("Nothing yet: sample a piece or upload a song.",
                                   elem_id="info")
                roll = gr.Image(label="Piano roll", type="filepath", interactive=False,
                                elem_id="roll")
                audio = gr.Audio(label="Listen", type="filepath", interactive=False,
                                 elem_id="audio")
                midi = gr.File(label="MIDI", interactive=False, elem_id="midi")
                results = gr.Dropdown([], label="Results of this tab", elem_id="results")
                with gr.Row():
                    as_song = gr.Button("Use as song", size="sm")
                    as_other = gr.Button("Use as second song", size="sm")
        outputs = [pieces, results, roll, audio, midi, info]
        run = dict(outputs=outputs, concurrency_id="model", concurrency_limit=concurrency)
        # samples of several tabs wait together for one batch (Batcher)
        sample_btn.click(task(studio.sample), common + [genre, bars, meter, rhythm, poly],
                         api_name="sample", outputs=outputs, concurrency_id="sample",
                         concurrency_limit=MAX_BATCH)
        cont_btn.click(task(studio.continue_), common + [song, cont_bars], api_name="continue",
                       **run)
        def infill(p, s, r, use, o, **kw):
            return studio.infill(p, s, r, o if use else None, **kw)

        infill_btn.click(task(infill), common + [song, ranges, use_like, other],
                         api_name="infill", **run)
        transfer_btn.click(task(studio.transfer), common + [song, t_genre, t_rhythm, t_poly, t_bars],
                           api_name="transfer", **run)
        interp_btn.click(task(studio.interpolate), common + [song, other, steps, i_bars],
                         api_name="interpolate", **run)

        def pick(name, pieces):
            return show(next((p for p in pieces or [] if p.name == name), None))

        results.change(pick, [results, pieces], [roll, audio, midi, info], api_name=False)

        def use(name, pieces):
            p = next((p for p in pieces or [] if p.name == name), None)
            if p is None:
                raise gr.Error("no result to use yet", print_exception=False)
            return p.midi

        as_song.click(use, [results, pieces], song, api_name=False)
        as_other.click(use, [results, pieces], other, api_name=False)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=concurrency)
    demo.studio = studio
    return demo


def serve(run_dir, host: str = "127.0.0.1", port: int = 7860, device: str = "cpu",
          block: bool = True, concurrency: int = CONCURRENCY):
    """Load the model once and serve the page; returns (demo, url)."""
    vae = MusicVAE.load(run_dir, device=device)
    if concurrency > 1 and device == "cpu":
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // concurrency))
    demo = build(vae, concurrency=concurrency)
    _, url, _ = demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block,
                            max_file_size=MAX_UPLOAD_BYTES, show_error=False, quiet=not block,
                            allowed_paths=[str(demo.studio.workdir)], footer_links=[])
    return demo, url
