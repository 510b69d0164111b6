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
