"""Tempo and beat phase from a phrase's onsets (clara_live.beat.tracker): synthetic phrases with
human timing jitter, seeded, so each test is exact and repeatable. Each test runs on both
estimators: `learned` (estimate_tempo, the shipped beat tracker) and `classic`
(estimate_tempo_classic, the hand-made one the benchmark compares it with); a strict xfail marks
where one of them is known to fail, and says why."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clara_live.beat.choice import estimate_tempo_chosen
from clara_live.beat.classic import estimate_tempo_classic
from clara_live.beat.limits import MAX_BPM, MIN_BPM
from clara_live.beat.tracker import TempoEstimate, estimate_tempo, events
from clara_live.errors import InputError

# a simple melody in beats: quarters, a pair of eighths, a half note (its onsets only)
MELODY = [0, 1, 2, 2.5, 3, 4, 6, 7, 7.5, 8, 9, 10, 10.5, 11, 12, 14]
METHODS = {"learned": estimate_tempo, "classic": estimate_tempo_classic, "chosen": estimate_tempo_chosen}
HALF = ("the learned tracker hears simple synthetic pulses at half their tempo (or a third): a model of "
        "ASAP's notated beats, where a pulse of even notes is as often two notes a beat; the chosen tempo, "
        "what clara live uses, hears them right (its rows of the same test pass). Trained again with steady "
        "phrases beside ASAP (issue 23's third round: synthetic steady phrases three windows in ten, POP909's "
        "tempi a tenth), the tracker heard the simple melodies here right and its valid steady phrases at 72 % "
        "where this one hears 55 %, but its ASAP valid openings at 49 % (this one: 57.5 %), and the chosen "
        "tempo on its outputs lost 8 points on ASAP valid and 3-4 on the steady sets': not shipped "
        "(BENCHMARKS, issue 23)")


def methods(learned_fails: str | None = None, classic_fails: str | None = None, chosen_fails: str | None = None
            ) -> list:
    """The three estimators' names as parameters, each a strict xfail where `..._fails` says why
    (chosen: the two others' candidates ranked, what clara live uses)."""
    def param(name: str, reason: str | None):
        return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason)) if reason else name
    return [param("learned", learned_fails), param("classic", classic_fails), param("chosen", chosen_fails)]


def played(bpm: float, beats=MELODY, jitter: float = 0.012, seed: int = 0, start: float = 50.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start + np.asarray(beats) * 60.0 / bpm + rng.normal(0.0, jitter, len(beats))


def phase_off(estimate: TempoEstimate, beat: float, bpm: float) -> float:
    """How far (in beats) the estimate's beats are from the beat at time `beat`."""
    k = (estimate.beat_time - beat) * bpm / 60.0
    return abs(k - round(k))


@pytest.mark.parametrize(("seed", "method"), [(seed, m) for seed in range(5) for m in METHODS])
def test_a_melody_at_84_bpm_with_jitter_is_heard_at_84(seed, method):
    onsets = played(84.0, seed=seed)
    estimate = METHODS[method](onsets, prior_bpm=100.0)
    assert estimate is not None and 0 < estimate.confidence <= 1
    assert estimate.bpm == pytest.approx(84.0, rel=0.02)
    assert phase_off(estimate, 50.0, 84.0) < 0.06  # the beats are the melody's beats
    assert abs(estimate.beat_time - onsets[0]) < 0.1  # the beat given is the one by the first note


@pytest.mark.parametrize(("bpm", "prior", "method"), [
    *(pytest.param(bpm, prior, "learned", marks=pytest.mark.xfail(strict=True, reason=HALF))
      for bpm, prior in [(120.0, 100.0), (120.0, 150.0), (160.0, 150.0)]),
    *((bpm, prior, "classic") for bpm, prior in [(120.0, 100.0), (120.0, 150.0), (160.0, 150.0)]),
    (120.0, 100.0, "chosen"), (120.0, 150.0, "chosen"),
    pytest.param(160.0, 150.0, "chosen", marks=pytest.mark.xfail(strict=True, reason=(
        "the chosen tempo hears this melody at 160 as 80 from a first guess of 150 that is a default, not a "
        "tempo heard before: its ranker learned from POP909's steady melodies (five phrases of each train song "
        "since issue 23), notated mostly at 60-90 bpm, that quarters and eighths are as often eighths and "
        "sixteenths at half the tempo; the ranker before them heard it right and missed the 84-bpm take 3 "
        "and two rubato takes, which this one hears right. From a first guess heard before (informed, as a "
        "second phrase's is) it hears 160. Rankers that also learned from first guesses that are not a heard "
        "tempo (issue 23's third round, tempo_choice --guessed) hear it at 80 too"))),
    *((bpm, prior, m) for bpm, prior in [(72.0, 100.0), (72.0, 60.0)] for m in METHODS)])
def test_octave_errors_are_resolved_for_a_simple_melody(bpm, prior, method):
    # its eighth notes make 2x a candidate and its half notes 1/2: the comb and the prior pick the beat
    estimate = METHODS[method](played(bpm, seed=1), prior_bpm=prior)
    assert estimate is not None
    assert estimate.bpm == pytest.approx(bpm, rel=0.02)


@pytest.mark.parametrize("method", methods(
    learned_fails="the learned tracker's first guess is a weak prior on its first beat only (wider priors "
                  "did as well on valid, narrower worse): its network and tempo head decide, here 60 bpm"))
def test_the_prior_settles_a_pulse_that_fits_two_levels_alike(method):
    # one note a beat at 120 bpm is as much 60 bpm with eighth notes: the first guess decides
    # (chosen: where it is a tempo heard before, the previous phrase's, not a default)
    onsets = played(120.0, beats=list(range(12)), jitter=0.005)
    heard = {"informed": True} if method == "chosen" else {}
    assert METHODS[method](onsets, prior_bpm=110.0, **heard).bpm == pytest.approx(120.0, rel=0.02)
    assert METHODS[method](onsets, prior_bpm=55.0, **heard).bpm == pytest.approx(60.0, rel=0.02)


@pytest.mark.parametrize("method", methods())
def test_a_pickup_does_not_move_the_beat(method):
    # an upbeat half a beat before the first downbeat, then quarters: the beats are the quarters'
    beats = [-0.5, *range(0, 12)]
    onsets = played(90.0, beats=beats, jitter=0.008)
    estimate = METHODS[method](onsets, prior_bpm=100.0)
    assert estimate.bpm == pytest.approx(90.0, rel=0.02)
    assert phase_off(estimate, 50.0, 90.0) < 0.06
    assert phase_off(estimate, onsets[0], 90.0) > 0.4  # the pickup itself is off the beat


@pytest.mark.parametrize("method", methods())
def test_loud_chords_on_the_beats_carry_the_phase(method):
    # a chord on every beat and single soft notes between them: the beats are the chords
    bpm, period = 100.0, 0.6
    onsets, velocities = [], []
    for k in range(10):
        onsets += [10 + k * period] * 3 + [10 + (k + 0.5) * period]
        velocities += [100, 100, 100, 40]
    estimate = METHODS[method](onsets, velocities, prior_bpm=100.0)
    assert estimate.bpm == pytest.approx(bpm, rel=0.02)
    assert phase_off(estimate, 10.0, bpm) < 0.05


@pytest.mark.parametrize("method", methods())
@pytest.mark.parametrize("bpm", [30.0, 300.0])
def test_phrases_at_the_ends_of_the_range_stay_in_it(bpm, method):
    beats = list(range(5)) if bpm < 60 else list(range(24))  # 8 s at 30 bpm, under 5 s at 300
    for prior in (MIN_BPM, 100.0, MAX_BPM):
        other = METHODS[method](played(bpm, beats=beats, jitter=0.004), prior_bpm=prior)
        assert other is None or MIN_BPM <= other.bpm <= MAX_BPM


@pytest.mark.parametrize(("bpm", "method"), [
    pytest.param(30.0, "learned", marks=pytest.mark.xfail(strict=True, reason=(
        "the learned tracker hears five notes 2 s apart (30 bpm) at 60 bpm, twice their tempo: each gap as two "
        "beats"))),
    pytest.param(300.0, "learned", marks=pytest.mark.xfail(strict=True, reason=(
        "the learned tracker hears 300 bpm at 150, half its tempo: " + HALF.split(": ", 1)[1]))),
    (30.0, "classic"), (300.0, "classic"), (30.0, "chosen"), (300.0, "chosen")])
def test_phrases_at_the_ends_of_the_range(bpm, method):
    beats = list(range(5)) if bpm < 60 else list(range(24))
    estimate = METHODS[method](played(bpm, beats=beats, jitter=0.004), prior_bpm=bpm)
    assert estimate is not None
    assert estimate.bpm == pytest.approx(bpm, rel=0.02)


@pytest.mark.parametrize("onsets", [
    [],
    [1.0],
    [1.0, 1.6],  # two notes: an interval, not a tempo
    [1.0, 1.6, 2.2],  # three: still too few
    [1.0, 1.01, 1.02, 1.03, 1.04],  # one chord, however many notes
    [1.0, 1.01, 1.02, 4.0, 4.01, 4.02],  # two sustained chords
    [2.0] * 8,
    [math.nan, 1.0, math.inf, 2.0],
])
@pytest.mark.parametrize("method", methods())
def test_too_little_evidence_gives_no_estimate(onsets, method):
    assert METHODS[method](onsets, prior_bpm=100.0) is None


@pytest.mark.parametrize("method", methods())
def test_bad_priors_and_velocities_do_not_crash(method):
    onsets = played(84.0)
    assert METHODS[method](onsets, prior_bpm=math.nan) is None
    assert METHODS[method](onsets, prior_bpm=0.0) is None
    estimate = METHODS[method](onsets, [0] * len(onsets), prior_bpm=1000.0)  # clamped to MAX_BPM
    assert estimate is None or MIN_BPM <= estimate.bpm <= MAX_BPM


def test_pitches_must_match_the_onsets():
    with pytest.raises(InputError, match="5 onsets, 5 velocities and 2 pitches"):
        estimate_tempo(played(84.0)[:5], [64] * 5, prior_bpm=100.0, pitches=[60, 62])


@pytest.mark.parametrize("method", methods(
    learned_fails="the learned tracker's confidence (its activation on the beats it tracks) does not tell "
                  "five scattered notes in 4 s from a short melody: about 30 of 50 get a tempo"))
def test_random_onsets_are_rarely_confident(method):
    rng = np.random.default_rng(7)
    heard = sum(METHODS[method](np.sort(rng.uniform(0, 4, 5)), prior_bpm=100.0) is not None for _ in range(50))
    assert heard <= 15, heard  # five scattered notes are mostly no tempo at all


def test_events_merge_chords_and_weigh_them():
    times, weights = events([1.0, 1.02, 1.04, 2.0], [64, 64, 64, 64])
    assert times.tolist() == pytest.approx([1.02, 2.0])
    assert weights.tolist() == pytest.approx([math.sqrt(3), 1.0])


def test_an_estimate_lists_its_beats():
    estimate = TempoEstimate(120.0, 10.0, 1.0)
    assert estimate.beats(9.0, 11.0).tolist() == pytest.approx([9.0, 9.5, 10.0, 10.5, 11.0])


@pytest.mark.parametrize(("seed", "method"), [
    *((seed, m) for seed in range(5) for m in ("learned", "classic")),
    *((seed, "chosen") for seed in (1, 2, 3, 4)),
    pytest.param(0, "chosen", marks=pytest.mark.xfail(strict=True, reason=(
        "the chosen tempo hears one of the five takes at 45, half: the same bias towards POP909's notated "
        "level as the 160-bpm melody's")))])
def test_a_melody_with_rubato_is_heard_at_its_median_tempo(seed, method):
    # about 89 bpm, each beat 6 % longer or shorter in a slow swing (a phrase's rubato); the
    # benchmark's Acc1 asks for 4 % of 60 / the median beat
    rng = np.random.default_rng(seed)
    periods = 60.0 / 90.0 * (1 + 0.06 * np.sin(np.arange(16) * 2 * np.pi / 12))
    beat_times = np.r_[0.0, np.cumsum(periods)]
    melody = [0, 1, 2, 2.5, 3, 4, 5, 6, 6.5, 7, 8, 9, 10, 10.5, 11, 12, 13, 14]
    onsets = np.interp(melody, np.arange(len(beat_times)), beat_times) + rng.normal(0.0, 0.01, len(melody))
    estimate = METHODS[method](onsets, prior_bpm=100.0)
    assert estimate is not None
    assert estimate.bpm == pytest.approx(60.0 / np.median(periods), rel=0.04)


def eighths(accented: tuple[int, ...], seed: int = 0) -> tuple[list[float], list[int]]:
    """Four bars of running eighths at 240 eighths a minute, loud on the bar's `accented` eighths."""
    rng = np.random.default_rng(seed)
    onsets = [k * 0.25 + float(rng.normal(0.0, 0.005)) for k in range(24)]
    return onsets, [100 if k % 6 in accented else 50 for k in range(24)]


@pytest.mark.parametrize(("prior", "method"), [
    *((prior, m) for prior in (60.0, 80.0, 100.0) for m in ("learned", "classic")),
    (60.0, "chosen"), (80.0, "chosen"),
    pytest.param(100.0, "chosen", marks=pytest.mark.xfail(strict=True, reason=(
        "the chosen tempo hears running eighths accented in threes at 120 (3/4's quarters) from a first guess "
        "of 100: its candidates' features weigh the onsets' accents on beats, not the accents' grouping, and "
        "its training phrases hold little 6/8")))])
def test_six_eight_is_heard_in_dotted_quarters(prior, method):
    estimate = METHODS[method](*eighths((0, 3)), prior_bpm=prior)
    assert estimate.bpm == pytest.approx(80.0, rel=0.02)  # 6/8: two beats of three eighths


@pytest.mark.parametrize("method", methods())
@pytest.mark.parametrize("prior", [100.0, 120.0])
def test_three_four_is_heard_in_quarters(prior, method):
    estimate = METHODS[method](*eighths((0, 2, 4)), prior_bpm=prior)
    assert estimate.bpm == pytest.approx(120.0, rel=0.02)  # 3/4: three beats of two eighths


@pytest.mark.parametrize("method", methods(
    classic_fails="octave errors are settled among x1/3..x3 of the strongest period; a 3:2 error (3/4 heard "
                  "as 6/8) is not among them (see BENCHMARKS, tempo from the playing)"))
def test_three_four_with_a_first_guess_near_its_dotted_half_beat(method):
    estimate = METHODS[method](*eighths((0, 2, 4)), prior_bpm=80.0)
    assert estimate.bpm == pytest.approx(120.0, rel=0.02)


def plain_viterbi(a: np.ndarray, prior_bpm: float, space, per_beat: np.ndarray) -> np.ndarray:
    """The decoder's model written out plainly, a frame at a time over every state (what
    beat_dbn.viterbi computes faster): the path's states."""
    from clara_live.beat import dbn as beat_dbn
    a = np.clip(a, beat_dbn.EPS, 1 - beat_dbn.EPS)
    gain = np.log(a) - np.log((1 - a) * beat_dbn.THRESHOLD / (1 - beat_dbn.THRESHOLD))
    bpm = 60.0 * beat_dbn.FPS / space.intervals
    score = (-0.5 * np.log2(bpm / prior_bpm) ** 2 - np.log(space.intervals) + per_beat)[space.block]
    score = score + gain[0] * space.beat
    back = np.zeros((len(a), space.block.size), dtype=np.int64)
    for t in range(1, len(a)):
        new = np.empty_like(score)
        new[1:] = score[:-1]  # a position on
        back[t, 1:] = np.arange(space.block.size - 1)
        for j, first in enumerate(space.firsts):
            sources = space.lasts[space.sources[j]]  # the last positions of the intervals that may lead here
            candidates = score[sources] + space.log_transition[j]
            k = int(np.argmax(candidates))
            new[first], back[t, first] = candidates[k] + per_beat[j], sources[k]
        score = new + gain[t] * space.beat
    path = np.empty(len(a), dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(len(a) - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


@pytest.mark.parametrize("seed", range(3))
def test_the_decoder_finds_the_plain_viterbi_path(seed):
    # issue 23: the decoder adds a beat's gains where its interval starts and walks back an interval at a
    # time; the path is the plain frame-by-frame Viterbi's
    from clara_live.beat import dbn as beat_dbn
    rng = np.random.default_rng(seed)
    a = np.clip(rng.uniform(0.0, 0.2, 300) + np.where(np.arange(300) % 27 == 3, 0.7, 0.0), 0, 1)
    space = beat_dbn.state_space()
    per_beat = rng.normal(0.0, 0.5, len(space.intervals))
    path = beat_dbn.viterbi(a, 100.0, space, per_beat=per_beat)
    assert path.tolist() == plain_viterbi(a, 100.0, space, per_beat).tolist()


def test_refining_many_grids_at_once_is_refining_each():
    from clara_live.beat.classic import _phase, _phases
    from clara_live.beat.tracker import refine, refine_many
    onsets = played(84.0, seed=2)
    t, w = events(onsets, np.random.default_rng(2).integers(40, 110, len(onsets)))
    periods = np.array([60 / 84, 30 / 84, 120 / 84, 40 / 84, 0.5, 1.7])
    phases = _phases(t, w, periods)
    assert phases.tolist() == pytest.approx([_phase(t, w, p)[0] for p in periods], abs=1e-12)
    many = refine_many(t, w, periods, phases)
    each = np.array([refine(t, w, p, ph) for p, ph in zip(periods, phases, strict=True)]).T
    assert np.allclose(many, each, rtol=0, atol=1e-12)


def test_a_candidate_is_described_alike_alone_and_among_the_others():
    # issue 23: a phrase's candidates are described all at once, the grids they share worked out once
    from clara_live.beat import choice as beat_choice
    onsets = played(84.0, seed=3)
    phrase = beat_choice.listen(onsets, [70 + k % 3 * 10 for k in range(len(onsets))], 100.0, [60] * len(onsets))
    found = beat_choice.candidates(phrase)
    together = beat_choice.features(phrase, found, informed=False)
    assert together.shape == (len(found), len(beat_choice.FEATURES)) and np.all(np.isfinite(together))
    alone = np.stack([beat_choice.features(phrase, [c], informed=False)[0] for c in found])
    assert np.allclose(together, alone, rtol=0, atol=1e-12)


def test_the_tracker_trainer_draws_steady_windows_and_takes_shipped_weights():
    # issue 23, third round: training/beat_tracker.py --steady / --pop909 / --init
    from clara_live.beat import net as beat_net
    from training import beat_tracker
    rng = np.random.default_rng(0)
    frames = int(beat_tracker.WINDOW * beat_net.FPS)
    x, y, mask, tempo = beat_tracker.steady_window(rng, frames)
    assert x.shape == (frames, beat_net.FEATURES) and y.shape == mask.shape == (frames, 2)
    assert y[:, 0].max() == 1.0 and mask[:, 0].any() and not mask[:, 1].any()  # beats exact, no downbeats
    assert tempo.sum() == pytest.approx(1.0)
    song = {"onsets": [0.5 * k for k in range(20)], "velocities": [80] * 20, "pitches": [60] * 20, "bpm": 120.0}
    x, y, mask, tempo = beat_tracker.steady_window(rng, frames, [song])
    assert x[:, 0].sum() > 0 and not mask.any()  # POP909: its tempo only
    bpm = beat_tracker.TEMPO_BINS[int(np.argmax(tempo))]
    assert 120.0 / 1.25 <= bpm <= 120.0 * 1.25  # the file's tempo, time-stretched at most 20 %
    model = beat_tracker.TCN()
    shipped = beat_net.load()
    model.load_numpy(shipped)
    again = model.numpy_weights()
    assert all(np.array_equal(shipped[k], again[k]) for k in shipped if k not in ("blocks", "tempo.bpm"))
