"""The original study's preprocessing, kept as the baseline the benchmarks compare against.

music21 parses each MIDI file; the notes of the first instrument part become pitch names
('E4') and chords become their normal order joined by dots ('0.4.7'). No durations, offsets
or velocities are kept.
"""

from __future__ import annotations

import warnings


def music21_tokens(path: str) -> list[str]:
    """Tokens of one MIDI file, as the original study's pipeline produced them."""
    from music21 import chord, converter, instrument, note

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # forceSource: music21 would otherwise reuse a pickled parse and make reruns fast
        midi = converter.parse(path, forceSource=True)
        parts = instrument.partitionByInstrument(midi)
        elements = parts.parts[0].recurse() if parts else midi.flatten().notes
        out = []
        for element in elements:
            if isinstance(element, note.Note):
                out.append(str(element.pitch))
            elif isinstance(element, chord.Chord):
                out.append(".".join(str(n) for n in element.normalOrder))
    return out


def tokens_to_notes(tokens: list[str], start_pitch: int = 60) -> list[list[int]]:
    """The study's decoding: each token back to MIDI pitches, in order.

    A pitch name ('E4', 'E-4', 'C#5') becomes one MIDI pitch (music21's own reading of the
    name it wrote); a chord token ('4.7.11', normal order) becomes those pitch classes placed
    upward from ``start_pitch`` (C4 = 60). Tokens that are neither (``<unk>``, anything
    unreadable) come back as an empty list, so callers can skip them.
    """
    from music21 import pitch

    out: list[list[int]] = []
    for tok in tokens:
        try:
            if tok and all(part.isdigit() for part in tok.split(".")):
                notes = [start_pitch + int(pc) for pc in tok.split(".")]
            else:
                notes = [int(pitch.Pitch(tok).midi)]
        except Exception:  # noqa: BLE001 - '<unk>' and anything music21 cannot read
            notes = []
        out.append([p for p in notes if 0 <= p <= 127])
    return out
