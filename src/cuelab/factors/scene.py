"""Scene factors: what is in front of the camera. The renderer (cuelab.render) applies them."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

from .base import Factor, OpenForm

SHAPES = ("cube", "sphere", "cylinder", "cone", "torus", "icosphere", "capsule", "monkey")

# Named colours, in sRGB (0-255) as people pick them; the renderer converts to linear.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30),
    "green": (40, 170, 50),
    "blue": (35, 70, 210),
    "yellow": (230, 200, 30),
    "cyan": (30, 190, 200),
    "magenta": (200, 40, 170),
    "orange": (240, 120, 20),
    "purple": (120, 50, 180),
    "white": (235, 235, 235),
    "gray": (128, 128, 128),
    "black": (25, 25, 25),
    "brown": (120, 75, 35),
}

TEXTURES = ("none", "checker", "stripes", "dots", "noise", "voronoi", "wave")
MATERIALS = ("matte", "glossy", "metal", "rubber")
BACKGROUNDS = (
    "studio",      # plain mid-grey backdrop
    "white",
    "black",
    "sky",         # vertical blue gradient
    "sunset",      # vertical orange-purple gradient
    "checker",
    "noise",
    "voronoi",
    "wave",
    "bricks",
)
OCCLUDERS = ("none", "bar", "box", "ball")
# What becomes of the target in the picture (the ImageNet-9 backgrounds challenge's foreground
# variants); the mask stays the target's exact mask, where it is or would be.
FOREGROUNDS = (
    "object",      # the target, as rendered
    "removed",     # No-FG: the picture without the target, no pixel of it, no soft edge
    "black",       # Only-BG-B: that picture, the pixels inside the target's mask exactly 0
    "tiled",       # Only-BG-T: that picture, inside the mask tiles of the backdrop taken from
                   # outside the mask's bounding box
)

def image_problem(path: Path) -> str | None:
    """Not an image with pixels (a text file named .png, a truncated file), or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
            empty = im.width == 0 or im.height == 0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return f"{path} is not a readable PNG or JPEG image ({type(e).__name__}: {e})"
    return f"{path} has no pixels" if empty else None


def mesh_problem(path: Path) -> str | None:
    """Not a mesh with faces in its format (.obj: every vertex three numbers, every face three
    or more vertices that exist, `obj_problem`; .ply: a face element; .stl: a facet), or None.
    Read cheaply: Blender reads the mesh itself."""
    kind = path.suffix.lower()
    if kind == ".obj":
        return obj_problem(path)
    head = path.read_bytes()[:1 << 20]
    if kind == ".ply":
        ok = head.startswith(b"ply") and re.search(rb"element face [1-9]", head) is not None
    else:  # .stl: ascii facets, or binary: an 80-byte header, a count, 50 bytes per facet
        count = int.from_bytes(head[80:84], "little") if len(head) >= 84 else 0
        ok = b"facet" in head[:4096] or (count > 0 and path.stat().st_size == 84 + 50 * count)
    return None if ok else f"{path} holds no faces of a {kind} mesh"


# The statements of a Wavefront .obj file (geometry, grouping, display, free-form surfaces);
# a line that starts with anything else is not an .obj line.
OBJ_STATEMENTS = frozenset(
    "v vt vn vp f fo l p o g s mg usemtl mtllib maplib usemap lod bevel c_interp d_interp "
    "trace_obj shadow_obj ctech stech cstype deg bmat step curv curv2 surf parm trim hole scrv "
    "sp end con call csh".split())


def obj_problem(path: Path) -> str | None:
    """What is wrong with a Wavefront .obj mesh, or None: a line that is no .obj statement, a
    vertex (v, vt, vn) that is not numbers, a face of fewer than three corners or one that
    refers to a vertex, texture or normal not defined before it (Blender drops such faces, or
    the whole mesh), no face at all. Each problem with its line."""
    stat = path.stat()
    return _obj_problem(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _obj_problem(path: str, mtime_ns: int, size: int) -> str | None:
    """`obj_problem` of one version of a file (its time and size): read once per process."""
    counts = {"v": 0, "vt": 0, "vn": 0}
    names = {"v": "vertex", "vt": "texture coordinate", "vn": "normal"}
    faces, pending, start = 0, "", 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            line = pending + raw.decode("utf-8", errors="replace").strip()
            if line.endswith("\\"):  # continued on the next line
                pending, start = line[:-1] + " ", start or number
                continue
            pending, at, start = "", start or number, 0
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            where = f"{path} line {at}"
            shown = line if len(line) <= 60 else line[:60] + "..."
            key = words[0]
            if "\ufffd" in line or any(ord(c) < 32 and c != "\t" for c in line):
                return f"{where}: binary bytes, not a line of an .obj mesh"
            if key not in OBJ_STATEMENTS:
                return f"{where}: {shown!r} is not a line of an .obj mesh"
            if key in counts:
                least = {"v": 3, "vt": 1, "vn": 3}[key]
                if len(words) - 1 < least or not all(_is_number(w) for w in words[1:]):
                    return (f"{where}: {shown!r} is not a {names[key]} ({least} number"
                            f"{'s' if least > 1 else ''} or more)")
                counts[key] += 1
            elif key == "f":
                if len(words) < 4:
                    return f"{where}: {shown!r} is not a face (three corners or more)"
                for corner in words[1:]:
                    refs = corner.split("/")
                    if len(refs) > 3 or not refs[0]:
                        return f"{where}: {shown!r}: corner {corner!r} is not v, v/vt, " \
                               "v/vt/vn or v//vn"
                    for kind, ref in zip(("v", "vt", "vn"), refs):
                        if not ref and kind != "v":
                            continue
                        try:
                            i = int(ref)
                        except ValueError:
                            return f"{where}: {shown!r}: corner {corner!r} is not numbers"
                        if i == 0 or abs(i) > counts[kind]:
                            return (f"{where}: the face refers to {names[kind]} {i}, but only "
                                    f"{counts[kind]} come before it in the file")
                faces += 1
    return None if faces else f"{path} holds no faces of a .obj mesh"


def _is_number(word: str) -> bool:
    try:
        return math.isfinite(float(word))
    except ValueError:
        return False


MESH = OpenForm("mesh:", r".+\.(?:obj|ply|stl)", "mesh:<path to .obj/.ply/.stl>", is_file=True,
                check=mesh_problem)
IMAGE = OpenForm("image:", r".+\.(?:png|jpe?g)", "image:<path to .png/.jpg>", is_file=True,
                 check=image_problem)
HSV = OpenForm("hsv:", r"(\d+(?:\.\d+)?),(\d(?:\.\d+)?),(\d(?:\.\d+)?)", "hsv:H,S,V",
               valid=lambda g: float(g[0]) < 360 and float(g[1]) <= 1 and float(g[2]) <= 1)


def hsv_of(value: str) -> tuple[float, float, float] | None:
    """(hue in degrees, saturation, value) of an 'hsv:H,S,V' colour, else None."""
    parts = HSV.parse(value)
    return tuple(float(x) for x in parts) if parts else None


# --- texture contrast -----------------------------------------------------------------------------
# A texture is the pattern in a shade or tint of the base colour (the renderer's
# `cuelab.render.studio.pattern_color`): the same hue, PATTERN_LIGHTNESS_STEP CIE L* (0-100) away
# from the base's lightness, darker on colours at least PATTERN_LIGHTNESS_SPLIT light, lighter on
# darker ones. So the pattern shows with the same lightness contrast on every colour, and a colour
# sweep leaves the texture as visible as it was (a pattern 0.12 x the base colour all but vanished
# on black, and lost most of its contrast on blue, purple, red). What stays coupled to the colour
# is the pattern's polarity: on LIGHT_PATTERN_COLORS the pattern is lighter than the base, on the
# other palette colours darker.
PATTERN_LIGHTNESS_STEP = 40.0
PATTERN_LIGHTNESS_SPLIT = 50.0


def _srgb_to_linear(c: float) -> float:
    """One sRGB component (0-1) in linear light."""
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def cie_lightness(y: float) -> float:
    """CIE L* (0-100) of a relative luminance y (0-1)."""
    return 116 * y ** (1 / 3) - 16 if y > (6 / 29) ** 3 else y * (29 / 3) ** 3


def cie_luminance(lightness: float) -> float:
    """The relative luminance (0-1) of a CIE L* (0-100): `cie_lightness`'s inverse."""
    f = (lightness + 16) / 116
    return f ** 3 if f > 6 / 29 else lightness * (3 / 29) ** 3


def luminance(rgb) -> float:
    """Relative luminance of linear sRGB (Rec. 709 primaries)."""
    return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]


def pattern_is_lighter(base_linear) -> bool:
    """Is a texture's pattern lighter than this base colour (linear RGB)?"""
    return cie_lightness(luminance(base_linear)) < PATTERN_LIGHTNESS_SPLIT


def _palette_linear(name: str) -> tuple[float, float, float]:
    return tuple(_srgb_to_linear(c / 255) for c in PALETTE[name])


LIGHT_PATTERN_COLORS = frozenset(name for name in PALETTE
                                 if pattern_is_lighter(_palette_linear(name)))


SCENE_FACTORS = (
    # --- the object -------------------------------------------------------------------------
    Factor("shape", "scene", "The target object's shape: a primitive, or a user mesh file.",
           default="cube", levels=SHAPES,
           open_form=MESH),
    Factor("size", "scene", "Object scale relative to the unit primitive (1 = about a third of "
           "the frame at the default camera).", default=1.0, low=0.3, high=2.0, unit="x"),
    Factor("color", "scene", "Object base colour: a palette name or hsv:H,S,V "
           "(H in degrees, S and V from 0 to 1).", default="gray", levels=tuple(PALETTE),
           open_form=HSV),
    Factor("texture", "scene", "Procedural pattern modulating the object's surface together with "
           "its colour (the pattern in the base colour's hue, a fixed lightness step darker on "
           "light colours and lighter on dark ones).", default="none", levels=TEXTURES),
    Factor("material", "scene", "Surface reflectance model.", default="matte", levels=MATERIALS),
    Factor("rotation", "scene", "Object yaw about the vertical axis.", default=0.0,
           low=0.0, high=360.0, unit="deg"),
    Factor("position_x", "scene", "Horizontal offset of the object in the frame, as a fraction of "
           "the half-width (0 = centred).", default=0.0, low=-0.6, high=0.6),
    Factor("position_y", "scene", "Vertical offset of the object in the frame, as a fraction of "
           "the half-height (0 = centred).", default=0.0, low=-0.6, high=0.6),
    # --- the surroundings ------------------------------------------------------------------
    Factor("background", "scene", "What is behind the object: solid, gradient, procedural, or "
           "an image file.", default="studio", levels=BACKGROUNDS,
           open_form=IMAGE),
    Factor("foreground", "scene", "What becomes of the target in the picture: the object, "
           "removed (No-FG), blacked out (Only-BG-B) or filled with tiles of the background "
           "(Only-BG-T); the mask stays where the object is.", default="object",
           levels=FOREGROUNDS),
    Factor("occluder", "scene", "A distractor object partly covering the target (its placement "
           "comes from the row's seed; the visible fraction is measured from the masks).",
           default="none", levels=OCCLUDERS, seeded=True),
    # --- light -------------------------------------------------------------------------------
    Factor("light_elevation", "scene", "Key light elevation above the horizon.", default=45.0,
           low=5.0, high=90.0, unit="deg"),
    Factor("light_azimuth", "scene", "Key light azimuth (0 = from the camera's side).",
           default=30.0, low=0.0, high=360.0, unit="deg"),
    Factor("light_intensity", "scene", "Key light strength relative to the studio default.",
           default=1.0, low=0.1, high=5.0, unit="x"),
    Factor("light_temperature", "scene", "Key light colour temperature (black body).",
           default=6500.0, low=2000.0, high=12000.0, unit="K"),
    Factor("ambient", "scene", "Light from everywhere but the key light (sky and bounce light), "
           "relative to the studio's; 0 leaves the key light alone, with black shadows.",
           default=1.0, low=0.0, high=4.0, unit="x"),
    # --- camera ------------------------------------------------------------------------------
    Factor("camera_distance", "scene", "Camera distance from the object, relative to the "
           "default framing.", default=1.0, low=0.6, high=2.5, unit="x"),
    Factor("camera_elevation", "scene", "Camera elevation above the horizon.", default=20.0,
           low=-10.0, high=80.0, unit="deg"),
    Factor("camera_azimuth", "scene", "Camera azimuth around the object.", default=0.0,
           low=0.0, high=360.0, unit="deg"),
    Factor("focal_length", "scene", "Lens focal length (35 mm equivalent); the distance is "
           "scaled with it so the object keeps its size and only perspective changes.",
           default=50.0, low=18.0, high=200.0, unit="mm"),
)
