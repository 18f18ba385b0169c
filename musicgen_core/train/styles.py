"""The style table of the synthetic corpus: instrumentation, tempo, meter, harmony and groove per musical style,
and the vocabularies it names (progression families, drum/bass/comp grid patterns, instrument words, lead ranges),
plus the named numbers with which compose.py plays them (grid step, phrase length, fills, gates, ranges, odds).

Each `Style` names General-MIDI programs per role (alternatives are drawn at random per clip), the pattern names that
`compose.py` understands, and the words the captions use. Programs are 0-based GM numbers; drum "programs" are GM
drum-kit numbers in bank 128 (0 standard, 8 room, 16 power, 24 electronic, 25 TR-808, 32 jazz, 40 brush,
48 orchestra), present in every GM SoundFont we render with.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """One role of the arrangement: GM programs to choose from, pattern names, and how often the role plays."""

    programs: tuple[int, ...]
    patterns: tuple[str, ...] = ("",)
    prob: float = 1.0


@dataclass(frozen=True)
class Style:
    """A musical style: what plays, how fast, in which meters, modes and progressions, and how captions name it."""

    name: str
    synonyms: tuple[str, ...]  # genre words for captions; the first is the canonical one
    moods: tuple[str, ...]  # style-specific mood words, mixed with the mode x tempo moods
    tempo: tuple[int, int]  # beats per minute (the felt beat: a dotted quarter in 6/8)
    meters: tuple[tuple[int, int], ...]
    modes: tuple[str, ...]  # "major" / "minor", repeated entries weight the draw
    progressions: str  # family name in compose.PROGRESSIONS
    lead: Part  # melody instrument(s); patterns unused
    drums: Part | None = None  # programs are drum kits
    bass: Part | None = None
    comp: Part | None = None  # chords: strums, arpeggios, stabs, ...
    pad: Part | None = None  # sustained chords above the comp
    counter: Part | None = None  # slow counter-melody below the lead
    swing: tuple[float, float] = (0.0, 0.0)  # off-beat eighths delayed by swing/6 of a beat
    density: float = 1.0  # melody notes per beat, roughly
    voice_lead: float = 0.2  # probability that a voice/whistle/ocarina/flute preset plays the lead
    corpus: float = 0.0  # probability that the melody is a window of a real folk tune
    chorale: float = 0.0  # probability of a Bach chorale with its own alto/tenor/bass
    reverb: tuple[float, float] = (0.05, 0.25)  # wet level range
    vinyl: bool = False  # lo-fi texture: low-pass + crackle


# Roman numerals relative to the major scale of the key (compose.parse_chord), one chord per bar, cycled.
PROGRESSIONS = {  # family -> mode -> progressions
    "pop": {"major": ("I V vi IV", "vi IV I V", "I vi IV V", "I IV vi V", "IV I V vi", "I V IV V"),
            "minor": ("i bVI bIII bVII", "i iv bVII bIII", "i bVI iv V", "i bVII bVI bVII", "i iv bVI V")},
    "rock": {"major": ("I bVII IV I", "I IV V IV", "I V IV IV", "I IV I V", "I bIII IV I"),
             "minor": ("i bVII bVI bVII", "i bIII bVII iv", "i iv v i", "i bVI bVII i")},
    "jazz": {"major": ("ii7 V7 Imaj7 vi7", "Imaj7 vi7 ii7 V7", "iii7 vi7 ii7 V7", "Imaj7 IV7 iii7 VI7",
                       "ii7 V7 Imaj7 Imaj7"),
             "minor": ("iiø7 V7 im7 im7", "im7 ivm7 bVII7 bIIImaj7", "im7 bVImaj7 iiø7 V7")},
    "lofi": {"major": ("Imaj7 vi7 ii7 V7", "IVmaj7 iii7 ii7 Imaj7", "Imaj7 IVmaj7 iii7 vi7", "ii7 V7 Imaj7 IVmaj7"),
             "minor": ("im7 ivm7 im7 vm7", "im7 bVImaj7 ivm7 vm7", "ivm7 vm7 im7 im7", "im7 bIIImaj7 ivm7 bVII7")},
    "edm": {"major": ("vi IV I V", "I V vi IV", "IV V vi vi", "IV I V vi"),
            "minor": ("i bVI bIII bVII", "i bVII bVI bVII", "i iv bVI bVII", "i bVI iv bVII")},
    "classical": {"major": ("I IV V I", "I vi ii V", "I ii V I", "I IV I V", "I vi IV V", "I V vi iii IV I IV V"),
                  "minor": ("i iv V i", "i bVI iv V", "i iv bVII bIII bVI ii° V i", "i V i iv")},
    "folk": {"major": ("I IV I V", "I V I IV", "I IV V I", "I I IV V", "I vi IV V"),
             "minor": ("i bVII i v", "i iv i bVII", "i bIII bVII i", "i bVII bVI bVII")},
    "blues": {"major": ("I7 I7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7", "I7 IV7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7"),
              "minor": ("im7 im7 im7 im7 ivm7 ivm7 im7 im7 bVI7 V7 im7 V7",)},
    "reggae": {"major": ("I IV I V", "I I IV IV", "I vi IV V", "IV V I I"),
               "minor": ("i iv i iv", "i bVII i bVII", "i iv i v", "i bVI bVII i")},
    "funk": {"major": ("I7 I7 IV7 IV7", "I7 IV7 I7 IV7", "I7 bVII7 IV7 I7"),
             "minor": ("im7 im7 IV7 IV7", "im7 IV7 im7 IV7", "im7 im7 bVII7 IV7")},
    "hymn": {"major": ("I IV V I", "I vi IV V", "I ii V I", "I IV I V", "I V vi IV"),
             "minor": ("i iv V i", "i bVI iv V", "i bIII iv V")},
    "ambient": {"major": ("Imaj7 IVmaj7", "Iadd9 IVadd9", "I vi7 IVmaj7 IVmaj7", "Isus4 I bVII IV"),
                "minor": ("im7 bVImaj7", "i bVII", "im7 ivm7", "i bVI bIII bVII")},
    "march": {"major": ("I V V I", "I IV V I", "I I V V", "I IV I V"), "minor": ("i V i V", "i iv V i")},
}
# Groove grids on a 16th-note grid, one string per bar (4/4 grids are cut or tiled to other meters by compose._grid):
# drums `X` accent, `x` hit, `o` ghost; bass R root, 3/5/7 chord degrees, 8 octave, 6 major sixth, w random chord
# tone, a chromatic approach to the next root; comp X/x chord, n next arpeggio note, l/m/u lowest/middle/highest
# voiced note; `-` holds, `.` rests. A tuple of grids is a choice per bar.
K, S, H, O, R, P, C, SS, CL, T = 36, 38, 42, 46, 51, 44, 49, 37, 39, 54  # GM drum notes
DRUMS = {  # pattern -> meter key -> {drum note: grid}; meter keys "4" 4/4, "3" 3/4, "68" 6/8, "2" 2/4
    "rock": {"4": {K: "X.....x.X.x.....", S: "....X.......X...", H: "x.x.x.x.x.x.x.x."},
             "68": {K: "X.....x.....", S: "......X.....", H: "x.x.x.x.x.x."}},
    "rock_ride": {"4": {K: "X.......X.x.....", S: "....X.......X...", R: "x.x.x.x.x.x.x.x."}},
    "pop": {"4": {K: "X.....x.X.......", S: "....X.......X...", H: "x.xxx.x.x.xxx.x."}},
    "four_floor": {"4": {K: "X...X...X...X...", CL: "....x.......x...", O: "..x...x...x...x.", H: "o...o...o...o..."}},
    "ballad": {"4": {K: "x.......x.......", SS: "....x.......x...", H: "o.o.o.o.o.o.o.o."},
               "3": {K: "x...........", SS: "....o...o...", H: "o.o.o.o.o.o."},
               "68": {K: "x...........", SS: "......x.....", H: "o.o.o.o.o.o."}},
    "swing_ride": {"4": {R: "x...x.x.x...x.x.", P: "....x.......x...", K: "o.......o......."},
                   "3": {R: "x...x.x.x.x.", P: "....x...x..."}},
    "bossa": {"4": {K: "x..x....x..x....", SS: "x..x..x...x..x..", H: "o.o.o.o.o.o.o.o."}},
    "one_drop": {"4": {K: "........X.......", SS: "........x.......", H: "x.x.x.x.x.x.x.x."}},
    "boom_bap": {"4": {K: "X......x..x.....", S: "....X.......X...", H: "x.x.x.x.x.x.x.x."}},
    "shuffle": {"4": {K: "x.......x.......", S: "....x.......x...", H: "x.x.x.x.x.x.x.x."}},
    "funk": {"4": {K: "X.....x...x..x..", S: "....X..o.o..X..o", H: "xoxoxoxoxoxoxoxo"}},
    "march": {"4": {K: "X...x...X...x...", S: "x.xxx.x.x.xxx.x."}, "2": {K: "X...x...", S: "x.xxx.x."},
              "68": {K: "X.....x.....", S: "x.xx.xx.xx.x"}},
    "two_step": {"4": {K: "x.......x.......", S: "....x.......x...", H: "x.x.x.x.x.x.x.x."},
                 "3": {K: "x...........", S: "....x...x...", H: "x.x.x.x.x.x."}},
    "waltz": {"3": {K: "x...........", S: "....o...o...", H: "x...x...x..."}},
    "chip": {"4": {K: "x.......x.x.....", S: "....x.......x...", H: "x.x.x.x.x.x.x.x."}},
    "orchestral": {"4": {K: "x.......x......."}, "3": {K: "x..........."}},
    "folk": {"4": {K: "x.......x.......", T: "....x.......x..."}, "3": {K: "x...........", T: "....x...x..."},
             "68": {K: "x.....x.....", T: "...x.....x.."}, "2": {K: "x.......", T: "....x..."}},
}
CRASH_PATTERNS = {"rock", "rock_ride", "pop", "four_floor", "funk", "march", "two_step", "chip", "orchestral"}
BASS = {
    "root": {"4": "R---------------"}, "pedal": {"4": "R---------------"},
    "half_root": {"4": "R-------5-------", "3": "R-------5---", "68": "R-----5-----"},
    "root_fifth": {"4": "R---....5---....", "68": "R-----5-----", "2": "R---5---"},
    "eighths": {"4": "R-R-R-R-R-R-R-R-"}, "syncopated": {"4": "R-----R---R-5-R-"},
    "walking": {"4": ("R---w---5---a---", "R---3---5---a---", "R---5---w---a---", "R---8---5---a---"),
                "3": ("R---5---a---", "R---w---a---")},
    "offbeat": {"4": "..R-..R-..R-..R-"}, "octaves": {"4": "R-8-R-8-R-8-R-8-"}, "bossa": {"4": "R-----5-R-----5-"},
    "boogie": {"4": "R-3-5-6-8-6-5-3-"}, "reggae": {"4": ("R---..R-5-..3---", "R-----R-....5-3-")},
    "funk": {"4": ("R.....R.R..8.5..", "R..R..8.R.7.5.R.", "R.R...8...R.7.5.")},
    "lofi": {"4": ("R-------...R-5--", "R-----..R---5---")}, "waltz_bass": {"3": "R---........"},
    "march_bass": {"2": "R---5---", "4": "R---5---R---5---", "68": "R-----5-----"},
}
COMP = {
    "block": {"4": "X---------------"}, "block_half": {"4": "X-------x-------", "3": "X-----------",
                                                       "68": "X-----x-----"},
    "pop_eighths": {"4": "X-x-x-x-X-x-x-x-"}, "pulse8": {"4": "x-x-x-x-x-x-x-x-"},
    "strum": {"4": "X---x-x-.-x-X-x-", "3": "X---x-x-x-x-", "68": "X-x-x-X-x-x-", "2": "X---x-x-"},
    "arp8": {"4": "l-n-n-n-n-n-n-n-"}, "arp16": {"4": "nnnnnnnnnnnnnnnn"},
    "alberti": {"4": "l-u-m-u-l-u-m-u-", "3": "l-u-m-u-m-u-"},
    "power": {"4": "X-x-x-x-X-x-x-x-"}, "power_half": {"4": "X-------X-------"},
    "jazz_comp": {"4": ("..x-......x-....", "x-.....x-.......", "...x-...x--.....", "......x-..x-....")},
    "lofi_chords": {"4": ("X-------...x----", "X-----------x---")},
    "skank": {"4": "....x.......x..."}, "skank8": {"4": "..x...x...x...x."},
    "bossa_comp": {"4": ("x--x--x---x--x--", "x--x--x--x--x---")}, "shuffle_comp": {"4": "x.x.x.x.x.x.x.x."},
    "clav": {"4": ("x.xx..x.x.x..x.x", "x..x.x..x.xx.x..")}, "stabs": {"4": "..x...x...x...x."},
    "brass_stabs": {"4": ("....x.......x...", "......x...x.....", "x..........x....")},
    "oompah": {"4": "....x-......x-..", "3": "....x---x---", "2": "....x-..", "68": "...x-x...x-x"},
}
STACCATO = {"funk", "skank", "skank8", "clav", "stabs", "brass_stabs", "oompah", "shuffle_comp"}

# Lead presets that make hummed, sung and whistled queries in-distribution.
VOICE_LEADS: tuple[int, ...] = (53, 53, 85, 52, 54, 78, 78, 79, 73, 74, 75)

# Plain-word instrument names for captions (GM program -> words).
INSTRUMENT_NAMES: dict[int, str] = {
    0: "piano", 1: "bright piano", 2: "electric grand piano", 4: "electric piano", 5: "electric piano",
    6: "harpsichord", 7: "clavinet", 8: "celesta", 11: "vibraphone", 12: "marimba", 16: "organ",
    17: "percussive organ", 18: "rock organ", 19: "church organ", 20: "reed organ", 21: "accordion",
    22: "harmonica", 24: "nylon guitar", 25: "acoustic guitar", 26: "jazz guitar", 27: "clean electric guitar",
    29: "overdriven guitar", 30: "distorted guitar", 32: "upright bass", 33: "electric bass", 34: "picked bass",
    35: "fretless bass", 36: "slap bass", 38: "synth bass", 39: "synth bass", 40: "violin", 41: "viola",
    42: "cello", 43: "double bass", 46: "harp", 48: "strings", 49: "strings", 50: "synth strings", 52: "choir",
    53: "humming voice", 54: "synth voice", 56: "trumpet", 57: "trombone", 58: "tuba", 60: "french horn",
    61: "brass section", 62: "synth brass", 65: "alto saxophone", 66: "tenor saxophone", 68: "oboe",
    70: "bassoon", 71: "clarinet", 72: "piccolo", 73: "flute", 74: "recorder", 75: "pan flute", 78: "whistling",
    79: "ocarina", 80: "square wave lead", 81: "sawtooth synth lead", 85: "solo voice", 87: "synth lead",
    88: "synth pad",
    89: "warm pad", 90: "polysynth", 91: "choir pad", 94: "halo pad", 95: "sweep pad", 105: "banjo", 110: "fiddle",
}
DRUM_KIT_NAMES: dict[int, str] = {0: "drums", 8: "drums", 16: "drums", 24: "electronic drums", 25: "drum machine",
                                  32: "jazz drums", 40: "brushed drums", 48: "orchestral percussion"}

# Comfortable lead range (MIDI pitches) per program; others use DEFAULT_LEAD_RANGE.
LEAD_RANGES: dict[int, tuple[int, int]] = {
    52: (57, 76), 53: (57, 76), 54: (57, 79), 85: (57, 79), 78: (74, 96), 79: (67, 88), 73: (67, 91),
    74: (67, 88), 75: (67, 88), 72: (74, 96), 40: (67, 91), 110: (67, 91), 42: (48, 69), 60: (53, 74),
    57: (50, 70), 56: (60, 79), 65: (60, 81), 66: (55, 76), 22: (60, 84), 29: (60, 84), 30: (60, 84),
    26: (55, 79), 70: (48, 67), 68: (62, 86), 71: (57, 84), 19: (60, 81), 20: (60, 81), 105: (60, 84),
}
DEFAULT_LEAD_RANGE = (60, 84)

STYLES: tuple[Style, ...] = (
    Style("rock", ("rock", "rock song", "guitar rock", "classic rock", "rock track"),
          ("energetic", "driving", "raw", "powerful"), (96, 160), ((4, 4), (4, 4), (4, 4), (6, 8)),
          ("major", "minor"), "rock", lead=Part((29, 30, 29, 18, 81)),
          drums=Part((0, 16), ("rock", "rock_ride")), bass=Part((33, 34), ("eighths", "root_fifth")),
          comp=Part((30, 29), ("power", "power_half")), pad=Part((18, 16), ("block",), 0.25), density=1.1, corpus=0.15),
    Style("pop", ("pop", "pop song", "pop tune", "radio pop", "modern pop"),
          ("catchy", "polished", "radio-friendly", "hooky"), (88, 128), ((4, 4),), ("major", "major", "minor"), "pop",
          lead=Part((85, 54, 81, 73, 11, 0)), drums=Part((0, 8, 24), ("pop", "four_floor")),
          bass=Part((33, 38, 34), ("eighths", "root_fifth", "syncopated")),
          comp=Part((0, 4, 25, 2), ("pop_eighths", "strum", "arp8")), pad=Part((48, 89, 50, 90), ("block",), 0.5),
          counter=Part((48, 42, 89), ("",), 0.2), density=1.2, voice_lead=0.35, corpus=0.25),
    Style("piano_ballad", ("piano ballad", "ballad", "piano-led ballad", "soft piano ballad"),
          ("tender", "emotional", "intimate", "heartfelt"), (56, 84), ((4, 4), (4, 4), (3, 4), (6, 8)),
          ("major", "minor"), "pop", lead=Part((0, 0, 0, 1, 73, 40)), drums=Part((0, 40), ("ballad",), 0.3),
          bass=Part((32, 33, 35), ("root", "root_fifth"), 0.4), comp=Part((0, 0, 1), ("arp8", "block_half", "alberti")),
          pad=Part((48, 49), ("block",), 0.4), counter=Part((42, 40), ("",), 0.3), density=0.9, corpus=0.3,
          reverb=(0.15, 0.35)),
    Style("jazz", ("jazz", "jazz trio", "swing jazz", "straight-ahead jazz", "small-combo jazz"),
          ("swinging", "sophisticated", "smoky", "relaxed"), (100, 200), ((4, 4), (4, 4), (4, 4), (3, 4)),
          ("major", "minor"), "jazz", lead=Part((0, 11, 65, 66, 56, 26)), drums=Part((32, 40), ("swing_ride",)),
          bass=Part((32,), ("walking",)), comp=Part((0, 26, 0), ("jazz_comp",)), swing=(0.6, 1.0), density=1.6,
          voice_lead=0.1),
    Style("edm", ("EDM", "electronic dance music", "house", "dance track", "club track"),
          ("euphoric", "pumping", "hypnotic", "energetic"), (118, 132), ((4, 4),), ("minor", "minor", "major"), "edm",
          lead=Part((81, 80, 81, 87)), drums=Part((24, 25), ("four_floor",)),
          bass=Part((38, 39), ("offbeat", "octaves")), comp=Part((90, 81, 50), ("stabs", "arp16")),
          pad=Part((88, 89, 94, 95, 91), ("block",), 0.7), density=1.3, voice_lead=0.15, corpus=0.15),
    Style("string_quartet", ("string quartet", "chamber music", "classical string quartet", "chamber strings"),
          ("elegant", "refined", "graceful", "expressive"), (60, 120), ((4, 4), (3, 4), (6, 8)), ("major", "minor"),
          "classical", lead=Part((40,)), bass=Part((42,), ("half_root", "root")),
          comp=Part((41,), ("block_half", "arp8")), pad=Part((40,), ("block",), 0.6), density=1.1, voice_lead=0.0,
          corpus=0.25, chorale=0.35, reverb=(0.1, 0.3)),
    Style("folk", ("folk", "folk song", "traditional folk", "acoustic folk", "folk tune"),
          ("earthy", "rustic", "warm", "nostalgic"), (80, 140), ((4, 4), (3, 4), (6, 8), (2, 4)), ("major", "minor"),
          "folk", lead=Part((73, 110, 40, 22, 21, 74, 75)), drums=Part((0,), ("folk",), 0.3),
          bass=Part((32,), ("root_fifth",), 0.6), comp=Part((25, 24, 25, 105), ("strum", "arp8")), density=1.2,
          corpus=0.6),
    Style("lofi", ("lo-fi hip hop", "lofi", "chillhop", "lo-fi beat", "lofi hip-hop"),
          ("chill", "mellow", "dreamy", "laid-back"), (68, 92), ((4, 4),), ("major", "minor"), "lofi",
          lead=Part((4, 11, 73, 26, 5)), drums=Part((0, 8, 24), ("boom_bap",)), bass=Part((32, 33, 38), ("lofi",)),
          comp=Part((4, 5, 0), ("lofi_chords",)), pad=Part((89, 88), ("block",), 0.3), swing=(0.3, 0.6),
          density=0.8, vinyl=True),
    Style("reggae", ("reggae", "roots reggae", "reggae groove", "one-drop reggae"),
          ("laid-back", "sunny", "relaxed", "groovy"), (66, 90), ((4, 4),), ("major", "minor"), "reggae",
          lead=Part((56, 65, 16, 22)), drums=Part((0,), ("one_drop",)), bass=Part((33,), ("reggae",)),
          comp=Part((27, 17, 27), ("skank", "skank8")), pad=Part((16,), ("skank8",), 0.3), swing=(0.0, 0.4),
          density=0.9, corpus=0.15),
    Style("bossa_nova", ("bossa nova", "Brazilian bossa nova", "latin jazz", "bossa"),
          ("smooth", "breezy", "romantic", "sophisticated"), (110, 140), ((4, 4),), ("major", "minor"), "jazz",
          lead=Part((73, 65, 66, 0, 11)), drums=Part((0, 32, 40), ("bossa",)), bass=Part((32,), ("bossa",)),
          comp=Part((24,), ("bossa_comp",)), pad=Part((48, 49), ("block",), 0.3), density=1.1, voice_lead=0.3),
    Style("blues", ("blues", "twelve-bar blues", "shuffle blues", "electric blues", "blues shuffle"),
          ("soulful", "gritty", "bluesy", "groovy"), (70, 130), ((4, 4),), ("major",), "blues",
          lead=Part((22, 65, 66, 29, 26)), drums=Part((0, 32), ("shuffle",)),
          bass=Part((32, 33), ("boogie", "walking")),
          comp=Part((0, 16, 27), ("shuffle_comp", "pop_eighths")), swing=(0.7, 1.0), density=1.1),
    Style("orchestral", ("orchestral", "cinematic orchestral", "symphonic", "film score", "orchestra piece"),
          ("epic", "majestic", "cinematic", "dramatic"), (60, 130), ((4, 4), (4, 4), (3, 4)), ("major", "minor"),
          "classical", lead=Part((56, 60, 73, 68, 40, 71)), drums=Part((48,), ("orchestral",), 0.6),
          bass=Part((43, 42, 58), ("half_root", "root")), comp=Part((48, 49), ("block_half", "arp8", "pulse8")),
          pad=Part((60, 61, 52), ("block",), 0.6), counter=Part((42, 70, 57, 60), ("",), 0.5), density=1.0,
          voice_lead=0.1, corpus=0.25, chorale=0.1, reverb=(0.2, 0.4)),
    Style("hymn", ("hymn", "chorale", "church hymn", "sacred hymn", "hymn tune"),
          ("reverent", "solemn", "peaceful", "spiritual"), (60, 92), ((4, 4), (3, 4)), ("major", "major", "minor"),
          "hymn", lead=Part((19, 52, 19, 20)), bass=Part((19, 20), ("half_root",)),
          comp=Part((19, 52, 20), ("block_half",)), density=0.8, voice_lead=0.1, corpus=0.2, chorale=0.6,
          reverb=(0.25, 0.45)),
    Style("chiptune", ("chiptune", "8-bit music", "video game music", "retro game music", "chip music"),
          ("playful", "retro", "bouncy", "nostalgic"), (120, 170), ((4, 4),), ("major", "minor"), "pop",
          lead=Part((80, 80, 81)), drums=Part((25, 24), ("chip",), 0.7), bass=Part((80, 38), ("octaves", "eighths")),
          comp=Part((80, 81), ("arp16",)), density=1.6, voice_lead=0.0, corpus=0.25, reverb=(0.0, 0.1)),
    Style("funk", ("funk", "funk groove", "funky jam", "70s funk"), ("groovy", "funky", "tight", "punchy"),
          (92, 118), ((4, 4),), ("minor", "major"), "funk", lead=Part((65, 66, 56, 4, 81)),
          drums=Part((0, 16), ("funk",)), bass=Part((36, 33, 38), ("funk",)), comp=Part((7, 27), ("clav",)),
          pad=Part((61, 62), ("brass_stabs",), 0.4), swing=(0.0, 0.2), density=1.2),
    Style("waltz", ("waltz", "viennese waltz", "waltz in three", "ballroom waltz"),
          ("graceful", "romantic", "elegant", "swaying"), (90, 180), ((3, 4),), ("major", "major", "minor"),
          "classical", lead=Part((40, 73, 21, 0, 71)), drums=Part((40,), ("waltz",), 0.3),
          bass=Part((32, 43, 42), ("waltz_bass",)), comp=Part((0, 48, 21), ("oompah",)), density=1.0, corpus=0.3),
    Style("ambient", ("ambient", "ambient soundscape", "atmospheric ambient", "drone ambient", "new age"),
          ("dreamy", "spacious", "meditative", "ethereal"), (56, 84), ((4, 4), (3, 4)), ("major", "minor"), "ambient",
          lead=Part((11, 8, 0, 73, 75, 46)), bass=Part((38, 39), ("pedal",), 0.5),
          comp=Part((88, 89, 94, 95, 50), ("block",)), pad=Part((49, 52, 91), ("block",), 0.6), density=0.45,
          voice_lead=0.25, corpus=0.2, reverb=(0.3, 0.5)),
    Style("march", ("march", "military march", "marching band", "brass band march"),
          ("proud", "festive", "stately", "triumphant"), (96, 128), ((2, 4), (4, 4), (6, 8)),
          ("major", "major", "minor"),
          "march", lead=Part((56, 72, 73, 71, 60)), drums=Part((0, 48), ("march",)), bass=Part((58,), ("march_bass",)),
          comp=Part((61, 57, 60), ("oompah",)), counter=Part((57, 60), ("",), 0.4), density=1.2, voice_lead=0.05,
          corpus=0.25),
    Style("country", ("country", "country song", "americana", "country and western", "bluegrass-tinged country"),
          ("twangy", "homey", "easygoing", "heartfelt"), (88, 160), ((4, 4), (4, 4), (3, 4)),
          ("major", "major", "minor"),
          "folk", lead=Part((110, 27, 22, 105, 25)), drums=Part((0,), ("two_step",), 0.8),
          bass=Part((32, 33), ("root_fifth",)), comp=Part((25, 105), ("strum", "arp8")),
          counter=Part((110,), ("",), 0.2),
          density=1.2, corpus=0.3),
)
STYLE_BY_NAME: dict[str, Style] = {s.name: s for s in STYLES}


def instrument_name(program: int, is_drum: bool = False) -> str:
    """Plain-word name of a GM program (or drum kit) as captions say it."""
    if is_drum:
        return DRUM_KIT_NAMES.get(program, "drums")
    return INSTRUMENT_NAMES.get(program, "synthesizer")


# --- how compose.py plays the tables --------------------------------------------------------------------------
# Time grid and clip placement (times in quarter notes)
STEP_Q = 0.25  # one 16th-note grid step
SWING_DIVISOR = 6  # full swing (1.0) delays an off-beat eighth by a sixth of a quarter: onto the triplet
DOWNBEAT_START = 0.25  # share of clips that start on a downbeat; the others start anywhere in the first bars
MAX_START_BARS, MAX_START_S = 4, 4.0
PHRASE_BARS = 4  # melodies, fills and crashes follow 4-bar phrases
# Drums
FILL_PROB = 0.5  # the last beat of a phrase's last bar turns into a fill
FILL_TOMS = (50, 48, 45, 43)  # high to low tom, one per 16th
FILL_TOM_PROB, FILL_VELOCITY = 0.6, 95  # else the snare
CRASH_PROB, CRASH_Q, CRASH_VELOCITY = 0.7, 2.0, 100  # on the first beat of a phrase
HIT_Q = 0.5  # drum notes' length (the kit's samples decay on their own)
# Bass and chords
GATE = {"staccato": 0.45, "legato": 0.92}  # sounding share of a grid note
GUITARS = (*range(24, 32), 105)  # GM guitars and the banjo strum their chords
STRUM_S = 0.012  # between strings
BASS_LOW, BASS_LOW_HIGHER, HIGH_BASSES = 33, 36, (42, 19, 20)  # lowest bass note (cello and organs sit higher)
BASS_OFFBEAT = 0.85  # velocity of bass notes after the downbeat
POWER_LOW = 40  # lowest root of a power chord (root, fifth, octave)
# Melody
DENSITY_BPM = 110  # tempo at which a style's density applies as is; faster tempi get sparser rhythms
LEAP_PROB, LEAP, STEP_REACH = 0.2, 9, 4  # strong beats: a chord tone within STEP_REACH semitones, or a leap
TURN_PROB, RANGE_MARGIN = 0.25, 3  # weak beats: change direction, or turn back near the range's ends
SECOND_PROB = 0.75  # a scale step, else a skip of two
REST_PROB = 0.08
CADENCE_ROOT_BONUS = 3  # semitones a cadence will travel further to land on the chord's root
LEAD_ACCENT = 8  # velocity added on the beat
LEAD_GATE, VOICE_GATE, CHORALE_GATE = 0.9, 0.97, 0.95  # sounding share of a note (sung leads are legato)
COMP_RANGE, PAD_RANGE = (52, 76), (58, 82)
# Counter-melody: guide tones in [COUNTER_LOW, COUNTER_HIGH), starting near COUNTER_START
COUNTER_START, COUNTER_LOW, COUNTER_HIGH, COUNTER_HALVES_PROB, COUNTER_GATE = 60, 50, 70, 0.5, 0.95
# Harmonising a real tune: a triad's score is its melody weight minus CHORD_OUTSIDE times the weight outside it, minus
# CHORD_ORDER per place in the candidate list (common chords first); notes on the beat weigh ON_BEAT_WEIGHT
ON_BEAT_WEIGHT, CHORD_OUTSIDE, CHORD_ORDER = 1.5, 0.6, 0.15
MIN_NOTE_S = 0.03
