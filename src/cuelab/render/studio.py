"""The studio: the only module that imports bpy.

A `Studio` builds one Blender scene per worker process (every shape, the occluders, the lights,
the camera, every material) and, per row of the scenes table, only updates what changed, in the
cheapest way Blender and Cycles offer: ray visibility for which shape is shown (hide_render would
rebuild the dependency graph), object attributes for colour and surface, material slots for the
texture (no shader is compiled after the first render), transforms. Every backdrop is rendered
once, when the studio is built, and composited under each row's render on a transparent film.
Each scene factor has one owner: an apply function in `APPLY`, or a placement in `PLACEMENTS`.

Determinism: a row's pixels depend on the row alone, not on the process nor on the rows it
rendered before (tests/test_render_determinism.py). Cycles' seed is fixed; the meshes are the same
in every process (`_mesh_object`); no render setting changes once rows are rendered
(`_render_backdrops`); and our own randomness, such as where an occluder stands, comes from the
row's seed.
"""

from __future__ import annotations

import colorsys
import math
import os
import tempfile
import zlib
from pathlib import Path

import bpy  # noqa: I001  (bpy first: it makes bmesh and mathutils importable)
import bmesh
from _bpy import ops as _operators
import cv2
import numpy as np
from mathutils import Matrix, Vector

from ..color import decode_srgb16, encode_srgb8, srgb_to_linear
from ..config import RenderSettings
from ..factors.scene import (IMAGE, MESH, PALETTE, PATTERN_LIGHTNESS_STEP, SCENE_FACTORS,
                             cie_lightness, cie_luminance, hsv_of, luminance, pattern_is_lighter)

TARGET, OCCLUDER = 1, 2          # object pass indices
BASE_DISTANCE = 4.6              # camera distance (m) at 50 mm where the object fills ~half the frame
SUN_STRENGTH = 3.0               # W/m^2 at light_intensity 1
AMBIENT = (0.12, 0.12, 0.12)     # what non-camera rays see: backgrounds never light the object

# Backgrounds in linear RGB: (kind, colour A, colour B)
BACKGROUNDS = {
    "studio": ("solid", (0.18, 0.18, 0.18), None),
    "white": ("solid", (0.85, 0.85, 0.85), None),
    "black": ("solid", (0.0, 0.0, 0.0), None),
    "sky": ("gradient", (0.55, 0.7, 0.9), (0.05, 0.18, 0.6)),
    "sunset": ("gradient", (0.9, 0.35, 0.05), (0.2, 0.05, 0.3)),
    "checker": ("checker", (0.7, 0.7, 0.65), (0.1, 0.1, 0.12)),
    "noise": ("noise", (0.45, 0.35, 0.2), (0.05, 0.08, 0.05)),
    "voronoi": ("voronoi", (0.1, 0.35, 0.4), (0.6, 0.8, 0.7)),
    "wave": ("wave", (0.5, 0.2, 0.45), (0.08, 0.05, 0.2)),
    "bricks": ("bricks", (0.45, 0.15, 0.08), (0.6, 0.55, 0.5)),
}
BACKGROUND_PATTERNS = {  # kind: shader node, its output, scale, other inputs
    "checker": ("ShaderNodeTexChecker", "Fac", 6.0, {}),
    "noise": ("ShaderNodeTexNoise", "Fac", 5.0, {"Detail": 6.0}),
    "voronoi": ("ShaderNodeTexVoronoi", "Distance", 6.0, {}),
    "wave": ("ShaderNodeTexWave", "Fac", 4.0, {}),
    "bricks": ("ShaderNodeTexBrick", "Fac", 6.0, {}),
}
OBJECT_PATTERNS = {  # texture: shader node, its output, scale, other inputs, threshold
    "checker": ("ShaderNodeTexChecker", "Fac", 3.0, {}, None),
    "stripes": ("ShaderNodeTexWave", "Fac", 1.5, {"wave_type": "BANDS"}, (0.5,)),
    "dots": ("ShaderNodeTexVoronoi", "Distance", 4.0, {}, (0.28, "LESS_THAN")),
    "noise": ("ShaderNodeTexNoise", "Fac", 4.0, {"Detail": 4.0}, (0.5,)),
    "voronoi": ("ShaderNodeTexVoronoi", "Distance", 3.0, {"feature": "DISTANCE_TO_EDGE"},
                (0.07, "LESS_THAN")),
    "wave": ("ShaderNodeTexWave", "Fac", 1.2, {"wave_type": "RINGS"}, None),
}
SURFACE_INPUTS = ("Roughness", "Metallic", "Specular IOR Level")  # Principled BSDF inputs
MATERIALS = {  # SURFACE_INPUTS, then Coat Weight
    "matte": ((0.9, 0.0, 0.2), 0.0),
    "glossy": ((0.12, 0.0, 0.6), 1.0),
    "metal": ((0.25, 1.0, 0.5), 0.0),
    "rubber": ((0.55, 0.0, 0.35), 0.0),
}
OCCLUDER_STREAM = zlib.crc32(b"occluder")  # where an occluder stands: the row seed's stream
RAYS = ("camera", "diffuse", "glossy", "transmission", "volume_scatter", "shadow")


def color_of(value: str) -> tuple[float, float, float]:
    """A palette name or an hsv: colour, in linear RGB."""
    hsv = hsv_of(value)
    if hsv is not None:
        rgb = colorsys.hsv_to_rgb(hsv[0] / 360, hsv[1], hsv[2])
    else:
        rgb = tuple(x / 255 for x in PALETTE[value])
    return tuple(float(c) for c in srgb_to_linear(np.array(rgb, np.float64)))


def pattern_color(base: tuple[float, float, float]) -> tuple[float, float, float]:
    """A texture's pattern colour on a base colour (both linear RGB): the base's hue,
    PATTERN_LIGHTNESS_STEP CIE L* darker on a light base, lighter on a dark one
    (`cuelab.factors.scene`). Darker: the base scaled down. Lighter: the base scaled up until its
    brightest channel reaches 1, then mixed with white (both keep the hue)."""
    y = luminance(base)
    if not pattern_is_lighter(base):
        target = cie_luminance(cie_lightness(y) - PATTERN_LIGHTNESS_STEP)
        return tuple(float(c * target / y) for c in base)
    target = cie_luminance(cie_lightness(y) + PATTERN_LIGHTNESS_STEP)
    scaled = tuple(c * min(target / y, 1 / max(base)) for c in base) if y > 0 else (0.0,) * 3
    t = max(0.0, (target - luminance(scaled)) / (1 - luminance(scaled)))
    return tuple(float(c + t * (1 - c)) for c in scaled)


def tiled_background(picture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """ImageNet-9's Only-BG-T: `picture` with the pixels inside `mask` replaced by tiles of
    background from outside the mask's bounding box. The tiles: the strip above, below, left or
    right of the box, mirrored or repeated (at some phase) over the frame, whichever continues
    the background best where it shows inside the box: a gradient is tiled along itself, a
    checker in step with itself. Should the box fill the frame: the pixels outside the mask,
    repeated in raster order."""
    if not mask.any():
        return picture
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    strips = [(0, r0, 0, w), (r1, h, 0, w), (0, h, 0, c0), (0, h, c1, w)]  # rows, columns
    strips = sorted((s for s in strips if s[1] > s[0] and s[3] > s[2]),
                    key=lambda s: -(s[1] - s[0]) * (s[3] - s[2]))  # the largest first
    out = picture.copy()
    if not strips:
        if (~mask).any():
            out[mask] = np.resize(picture[~mask], (int(mask.sum()), picture.shape[2]))
        return out
    box = np.zeros_like(mask)
    box[r0:r1, c0:c1] = True
    seen_y, seen_x = np.nonzero(box & ~mask)  # the background inside the box, to continue
    known = picture[seen_y, seen_x].astype(np.int32)
    best, best_error = None, np.inf
    for a, b, c, d in strips:
        across_rows = b - a < h  # a strip above or below: tiled down the rows
        n, lo, hi = (h, a, b) if across_rows else (w, c, d)
        for index in _tilings(n, lo, hi):
            ys = index if across_rows else np.arange(h)
            xs = np.arange(w) if across_rows else index
            error = (np.abs(picture[ys[seen_y], xs[seen_x]] - known).mean()
                     if len(known) else 0.0)
            if error < best_error:
                best, best_error = (ys, xs), error
    ys, xs = best
    out[mask] = picture[ys][:, xs][mask]
    return out


def _tilings(n: int, a: int, b: int, phases: int = 64) -> list[np.ndarray]:
    """Ways to tile n positions with the positions [a, b): mirrored (continuing the strip at
    its edge), then repeated at up to `phases` phases."""
    period, i = b - a, np.arange(n)
    t = (i - a) % (2 * period)
    out = [a + np.where(t < period, t, 2 * period - 1 - t)]
    for phase in range(0, period, max(1, -(-period // phases))):
        out.append(a + (i - a + phase) % period)
    return out


class Studio:
    def __init__(self, settings: RenderSettings, meshes=(), images=(), scratch: str | None = None,
                 threads: int = 0):
        """`threads`: Cycles' CPU threads, 0 for one per core. Workers sharing a machine should
        split its cores: at 64x64 a render has serial parts, so one thread per worker process
        renders more images per second than every worker using every core."""
        bpy.ops.wm.read_factory_settings(use_empty=True)
        self.scene = bpy.context.scene
        self.device = _setup_device(self.scene, settings.device)
        self._setup_render(settings)
        self.scene.render.threads_mode = "FIXED" if threads else "AUTO"
        self.scene.render.threads = max(threads, 1)
        self.shapes = _make_shapes()
        for path in meshes:
            self.shapes[MESH.prefix + path] = _import_mesh(path)
        self._target_materials()
        for ob in self.shapes.values():
            ob.pass_index = TARGET
            ob.data.materials.clear()
            for m in self.materials:
                ob.data.materials.append(m)
            _show(ob, False)  # a row shows its own (`_apply_shape`)
        self.occluders = _make_occluders(self.scene)
        self._camera_and_light()
        self._world()
        self.images = {IMAGE.prefix + p: bpy.data.images.load(str(Path(p).resolve()))
                       for p in images}  # loaded once: loading per row leaks
        self._backdrop()
        self._compositor(scratch)
        self._render_backdrops()
        self.state: dict = {}    # the current row's values, for the placements at the end
        self.applied: dict = {}  # the factor values the scene shows now
        self.surface: dict = {}  # the target's attributes, set on whichever shape is shown
        self.slots: dict = {}    # each shape's material slot (its texture) now

    # -- per row ---------------------------------------------------------------------------------

    def render_row(self, row: dict) -> tuple[np.ndarray, np.ndarray, float]:
        """RGB (H, W, 3) uint8, the target's exact visible mask (H, W) bool, visible fraction."""
        self.state["seed"] = int(row["seed"])
        for name, apply in APPLY.items():
            # only what changed: every assignment to Blender data tags it for re-evaluation
            # and Cycles for a re-sync, even when the value is the same
            if self.applied.get(name, _UNSET) != row[name]:
                apply(self, row[name])
                self.applied[name] = row[name]
        self.state.update((n, row[n]) for names in PLACEMENTS.values() for n in names)
        self._place_target()
        self._place_camera_and_light()
        self._place_occluder(row["occluder"])
        color, alpha, mask = self._render()
        backdrop = self.backdrop_pictures[row["background"]]
        if row["foreground"] == "object":
            rgb = encode_srgb8(color * alpha + backdrop * (1 - alpha))  # "Standard" view: sRGB
        else:
            rgb = self._place_foreground(row, backdrop, mask)
        if row["occluder"] == "none":
            return rgb, mask, 1.0
        # the unoccluded silhouette: the same render without the occluder (at the same sample
        # count: Cycles would ignore a change, or keep it for the rows after: _render_backdrops)
        for ob in self.occluders.values():
            _show(ob, False)
        _, _, full = self._render()
        return rgb, mask, float(mask.sum() / max(full.sum(), 1))

    def _place_foreground(self, row: dict, backdrop: np.ndarray, mask: np.ndarray
                          ) -> np.ndarray:
        """The picture without the target (No-FG), blacked out inside its mask (Only-BG-B) or
        filled there with tiles of the backdrop (Only-BG-T): outside the mask, exactly the
        scene without the target (with no occluder: the backdrop)."""
        if row["occluder"] == "none":
            rgb = encode_srgb8(backdrop)
        else:  # the occluder stays: the scene rendered again with the target taken out
            _show(self.target, False)
            color, alpha, _ = self._render()
            _show(self.target, True)
            rgb = encode_srgb8(color * alpha + backdrop * (1 - alpha))
        if row["foreground"] == "black":
            rgb[mask] = 0
        elif row["foreground"] == "tiled":
            rgb[mask] = tiled_background(encode_srgb8(backdrop), mask)[mask]
        return rgb

    def _render(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The scene in linear light (straight alpha), its alpha (H, W, 1), the target's
        mask."""
        # The operator itself, not the bpy.ops wrapper: in background mode the wrapper
        # re-evaluates every view layer's viewport depsgraph before and after the call (1.5 ms
        # a row, 10% of it), and the render builds and evaluates its own depsgraph anyway.
        _operators.call("render.render", {"write_still": False})  # File Output writes the PNGs
        bgra = cv2.imread(str(self.io / "rgba.png"), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(self.io / "mask.png"), cv2.IMREAD_GRAYSCALE)
        color = decode_srgb16(cv2.cvtColor(bgra[..., :3], cv2.COLOR_BGR2RGB))
        alpha = bgra[..., 3:].astype(np.float32) / 65535
        return color, alpha, mask > 127

    # -- building --------------------------------------------------------------------------------

    def _setup_render(self, s: RenderSettings) -> None:
        sc, r, cy = self.scene, self.scene.render, self.scene.cycles
        r.engine = "CYCLES"
        cy.samples = s.samples
        cy.use_adaptive_sampling = False
        cy.use_denoising = s.denoise
        cy.seed = 0                          # fixed: persistent data ignores later changes
        cy.use_animated_seed = False
        cy.max_bounces = s.max_bounces
        cy.diffuse_bounces = min(2, s.max_bounces)
        cy.glossy_bounces = min(2, s.max_bounces)
        cy.transmission_bounces = cy.volume_bounces = 0
        cy.transparent_max_bounces = 1
        cy.caustics_reflective = cy.caustics_refractive = False
        r.resolution_x = r.resolution_y = s.resolution
        r.resolution_percentage = 100
        r.use_persistent_data = True         # keep BVH and shaders between rows
        r.film_transparent = True           # the backdrop is composited in (see _backdrop)
        r.dither_intensity = 0               # no noise on the 8-bit mask (the 16-bit RGBA has none)
        r.use_compositing = True
        sc.view_settings.view_transform = "Standard"  # AgX would shift the palette
        sc.view_settings.look = "None"
        sc.view_layers[0].use_pass_object_index = True

    def _target_materials(self) -> None:
        """The target's surfaces, one material per texture, every shape holding all of them
        so that each is compiled once: a texture change points the shape's faces at another
        slot. Colour and material are the target object's attributes (custom properties),
        so a new row re-syncs an object rather than recompiling a shader."""
        textures = ("none", *OBJECT_PATTERNS)
        self.materials = [_target_material(name) for name in textures]
        self.texture_slot = {name: i for i, name in enumerate(textures)}

    def _camera_and_light(self) -> None:
        cam = bpy.data.cameras.new("camera")
        cam.sensor_fit = "HORIZONTAL"
        cam.sensor_width = 36
        self.camera = bpy.data.objects.new("camera", cam)
        self.scene.collection.objects.link(self.camera)
        self.scene.camera = self.camera
        sun = bpy.data.lights.new("key", "SUN")
        sun.angle = math.radians(3)
        sun.use_temperature = True
        self.sun = bpy.data.objects.new("key", sun)
        self.scene.collection.objects.link(self.sun)

    def _world(self) -> None:
        """What every ray but the camera's sees: a constant ambient, so that a background
        change leaves the object's shading untouched (a clean counterfactual)."""
        w = self.scene.world = bpy.data.worlds.new("world")
        w.cycles.sampling_method = "NONE"  # constant: no importance map to build
        w.node_tree.nodes["Background"].inputs["Color"].default_value = (*AMBIENT, 1)

    def _backdrop(self) -> None:
        """What the camera sees behind the scene. A backdrop is a pattern in screen space, the
        same for every row, so each is rendered once, on its own (`_render_backdrops`), and
        composited under each row's render of the scene on a transparent film: the rows'
        camera rays never shade it. To render it: a plane riding with the camera with one
        constant material per background in its slots, the face pointed at the row's."""
        me = bpy.data.meshes.new("backdrop")
        me.from_pydata([(-1, -1, 0), (1, -1, 0), (1, 1, 0), (-1, 1, 0)], [], [(0, 1, 2, 3)])
        ob = self.backdrop = bpy.data.objects.new("backdrop", me)
        self.scene.collection.objects.link(ob)
        ob.parent = self.camera
        _show(ob, False)
        looks = {name: (kind, a, b or a, None) for name, (kind, a, b) in BACKGROUNDS.items()}
        looks |= {name: ("image", None, None, image) for name, image in self.images.items()}
        self.backdrop_slot = {}
        for name, look in looks.items():
            self.backdrop_slot[name] = len(me.materials)
            me.materials.append(_backdrop_material(name, *look))

    def _render_backdrops(self) -> None:
        """Every backdrop as the camera sees it (linear RGB), rendered when the studio is built:
        in a fixed order, nothing else shown, one camera for all, before any row, so that the
        film never changes once rows are rendered. Rendered on first use instead, a picture
        came in the middle of some row (whose silhouette then saw the backdrop's camera), and
        a film change is a trap with persistent data: Cycles takes the sample count only at
        the first render after a reset (the studio's first, or one after the film changed) and
        ignores later changes, so when that render was a 1-sample silhouette, every row after
        it was rendered with 1 sample too."""
        plane, cam = self.backdrop, self.camera.data
        self.camera.location, self.camera.rotation_euler = (0, 0, 0), (0, 0, 0)
        cam.lens, cam.shift_x, cam.shift_y, cam.clip_end = 50, 0, 0, 100
        plane.location = (0, 0, -10)  # filling the view three times over
        plane.scale = (3 * 10 * cam.sensor_width / 2 / cam.lens,) * 2 + (1,)
        plane.visible_camera = True
        self.scene.render.film_transparent = False
        self.backdrop_pictures = {}
        for value, slot in self.backdrop_slot.items():
            plane.data.polygons[0].material_index = slot
            plane.data.update()
            self.backdrop_pictures[value] = self._render()[0]
        plane.visible_camera = False
        self.scene.render.film_transparent = True

    def _compositor(self, scratch: str | None) -> None:
        # Blender can only hand its passes over as files: a RAM disk keeps that cheap
        self.io = Path(tempfile.mkdtemp(prefix=f"cuelab-render-{os.getpid()}-",
                                        dir=scratch or _ram_disk()))
        ng = bpy.data.node_groups.new("composite", "CompositorNodeTree")
        self.scene.compositing_node_group = ng
        ng.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        N, L = ng.nodes, ng.links
        layers = N.new("CompositorNodeRLayers")
        idmask = N.new("CompositorNodeIDMask")  # exact: the object-index pass, no anti-aliasing
        idmask.inputs["Index"].default_value = TARGET
        idmask.inputs["Anti-Alias"].default_value = False
        L.new(layers.outputs["Object Index"], idmask.inputs["ID value"])
        L.new(layers.outputs["Image"], N.new("NodeGroupOutput").inputs[0])
        out = N.new("CompositorNodeOutputFile")
        out.directory = str(self.io) + "/"
        out.file_name = ""
        out.format.media_type = "IMAGE"
        out.format.file_format = "PNG"
        out.format.compression = 0
        # the scene with its alpha, to composite the backdrop under (16-bit PNG: sRGB-encoded,
        # straight alpha, no view transform)
        out.format.color_depth = "16"
        out.format.color_mode = "RGBA"
        out.file_output_items.new("RGBA", "rgba").save_as_render = False
        item = out.file_output_items.new("FLOAT", "mask")
        item.override_node_format = True
        item.format.media_type = "IMAGE"
        item.format.file_format = "PNG"
        item.format.color_mode = "BW"
        item.format.color_depth = "8"
        item.format.compression = 0
        item.save_as_render = False
        L.new(layers.outputs["Image"], out.inputs["rgba"])
        L.new(idmask.outputs[0], out.inputs["mask"])

    # -- placing things ------------------------------------------------------------------------

    def _place_target(self) -> None:
        ob = self.target
        slot = self.texture_slot[self.state["texture"]]
        if self.slots.get(ob.name) != slot:  # only on change: the mesh is synced again
            ob.data.polygons.foreach_set("material_index", [slot] * len(ob.data.polygons))
            ob.data.update()
            self.slots[ob.name] = slot
        ob.scale = (self.state["size"],) * 3
        ob.rotation_euler = (0, 0, math.radians(self.state["rotation"]))
        for key, value in self.surface.items():
            ob[key] = value
        ob.update_tag(refresh={"OBJECT"})  # attributes re-sync with the object

    def _place_camera_and_light(self) -> None:
        s = self.state
        focal = s["focal_length"]
        distance = BASE_DISTANCE * s["camera_distance"] * focal / 50  # dolly zoom: size kept
        el, az = math.radians(s["camera_elevation"]), math.radians(s["camera_azimuth"])
        direction = Vector((math.cos(el) * math.sin(az), -math.cos(el) * math.cos(az),
                            math.sin(el)))
        self.camera.location = direction * distance
        self.camera.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
        cam = self.camera.data
        cam.lens = focal
        cam.clip_end = distance * 4
        # position in frame: a lens shift moves the image without changing the perspective
        cam.shift_x = -s["position_x"] / 2
        cam.shift_y = -s["position_y"] / 2
        el = math.radians(s["light_elevation"])
        az = math.radians(s["camera_azimuth"] + s["light_azimuth"])  # 0: from the camera side
        to_light = Vector((math.cos(el) * math.sin(az), -math.cos(el) * math.cos(az),
                           math.sin(el)))
        self.sun.rotation_euler = (-to_light).to_track_quat("-Z", "Y").to_euler()

    def _place_occluder(self, kind: str) -> None:
        for name, ob in self.occluders.items():
            _show(ob, name == kind)
        if kind == "none":
            return
        # between camera and object, offset so that it covers part of the target; where
        # exactly comes from the row's seed
        rng = np.random.default_rng([self.state["seed"], OCCLUDER_STREAM])
        cam = self.camera
        forward = cam.rotation_euler.to_matrix() @ Vector((0, 0, -1))
        right = cam.rotation_euler.to_matrix() @ Vector((1, 0, 0))
        up = cam.rotation_euler.to_matrix() @ Vector((0, 1, 0))
        angle = rng.uniform(0, 2 * math.pi)
        offset = rng.uniform(0.45, 0.8) * self.state["size"]
        ob = self.occluders[kind]
        ob.location = (cam.location + forward * (cam.location.length * 0.45)
                       + (right * math.cos(angle) + up * math.sin(angle)) * offset * 0.55)
        ob.rotation_euler = cam.rotation_euler.copy()
        ob.rotation_euler.rotate_axis("Z", angle)


_UNSET = object()


def _show(ob: bpy.types.Object, visible: bool) -> None:
    """Ray visibility, not hide_render: changing that rebuilds Blender's dependency graph."""
    if ob.visible_camera != visible:
        for ray in RAYS:
            setattr(ob, f"visible_{ray}", visible)


def _ram_disk() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


# --- one apply function per scene factor -----------------------------------------------------

def _apply_shape(st: Studio, value: str) -> None:
    for name, ob in st.shapes.items():
        _show(ob, name == value)
    st.target = st.shapes[value]


def _apply_color(st: Studio, value: str) -> None:
    rgb = color_of(value)
    st.surface["cuelab_base"] = rgb
    st.surface["cuelab_pattern"] = pattern_color(rgb)


def _apply_material(st: Studio, value: str) -> None:
    st.surface["cuelab_surface"], st.surface["cuelab_coat"] = MATERIALS[value]


def _apply_light_intensity(st: Studio, value: float) -> None:
    st.sun.data.energy = SUN_STRENGTH * value


def _apply_light_temperature(st: Studio, value: float) -> None:
    st.sun.data.temperature = value


def _apply_ambient(st: Studio, value: float) -> None:
    st.scene.world.node_tree.nodes["Background"].inputs["Color"].default_value = (
        *(value * c for c in AMBIENT), 1)


# Who applies each scene factor. A factor that acts alone has an apply function, called when its
# value changes. Factors that act together are set in `Studio.state` and placed together by one
# placement at the end of every row: the target's pose and surface pattern, the camera and the
# light's direction (both follow the camera), the occluder (where it stands comes from the row's
# seed), the backdrop (composited under the render) and the foreground (what becomes of the
# target in the picture, after compositing). Each scene factor has one owner.
APPLY = {
    "shape": _apply_shape,
    "color": _apply_color,
    "material": _apply_material,
    "light_intensity": _apply_light_intensity,
    "light_temperature": _apply_light_temperature,
    "ambient": _apply_ambient,
}
PLACEMENTS = {
    "target": ("size", "rotation", "texture"),
    "camera_and_light": ("camera_distance", "camera_elevation", "camera_azimuth", "focal_length",
                         "position_x", "position_y", "light_elevation", "light_azimuth"),
    "occluder": ("occluder",),
    "backdrop": ("background",),
    "foreground": ("foreground",),
}


def owners(apply=APPLY, placements=PLACEMENTS,
           factors=tuple(f.name for f in SCENE_FACTORS)) -> dict[str, str]:
    """Each scene factor's owner: its apply function's factor, or its placement. Raises when a
    factor has none or several (a factor the renderer would ignore, or set twice)."""
    owned = [(name, "apply") for name in apply]
    owned += [(name, f"placement {p}") for p, names in placements.items() for name in names]
    found: dict[str, list[str]] = {}
    for name, owner in owned:
        found.setdefault(name, []).append(owner)
    problems = [f"{n}: owned by {', '.join(found[n])}" for n in factors if len(found.get(n, [])) > 1]
    problems += [f"{n}: no apply function or placement" for n in factors if n not in found]
    problems += [f"{n}: not a scene factor" for n in found if n not in factors]
    if problems:
        raise TypeError("the studio must apply every scene factor once: " + "; ".join(problems))
    return {name: owners[0] for name, owners in found.items()}


OWNERS = owners()  # checked when the studio is imported


# --- building blocks -------------------------------------------------------------------------

def _out(N, L, kind: str, vector, output: str, scale: float = 1.0, **props):
    node = N.new(kind)
    L.new(vector, node.inputs["Vector"])
    node.inputs["Scale"].default_value = scale
    for key, value in props.items():
        if key in node.inputs:
            node.inputs[key].default_value = value
        else:
            setattr(node, key, value)
    return node.outputs[output]


def _target_material(texture: str) -> bpy.types.Material:
    """A Principled BSDF: base colour, or `texture`'s pattern in a shade or tint of it
    (`pattern_color`), on the object's own coordinates; colour and surface read from the
    object's attributes."""
    m = bpy.data.materials.new(f"target-{texture}")
    N, L = m.node_tree.nodes, m.node_tree.links
    bsdf = N["Principled BSDF"]
    surface = N.new("ShaderNodeSeparateXYZ")
    L.new(_attribute(N, "cuelab_surface").outputs["Vector"], surface.inputs[0])
    for axis, key in zip(surface.outputs, SURFACE_INPUTS):
        L.new(axis, bsdf.inputs[key])
    L.new(_attribute(N, "cuelab_coat").outputs["Fac"], bsdf.inputs["Coat Weight"])
    color = _attribute(N, "cuelab_base").outputs["Color"]
    if texture != "none":
        vec = N.new("ShaderNodeTexCoord").outputs["Object"]
        node, output, scale, props, edge = OBJECT_PATTERNS[texture]
        fac = _out(N, L, node, vec, output, scale=scale, **props)
        if edge:
            fac = _threshold(N, L, fac, *edge)
        pattern = _attribute(N, "cuelab_pattern").outputs["Color"]  # `pattern_color`
        color = _mix(N, L, color, pattern, fac)
    L.new(color, bsdf.inputs["Base Color"])
    return m


def _backdrop_material(name: str, kind: str, a, b, image) -> bpy.types.Material:
    """A constant emission: colour `a`, or a screen-space pattern from `a` to `b`, or an
    image stretched over the view."""
    m = bpy.data.materials.new(f"backdrop-{name}")
    N, L = m.node_tree.nodes, m.node_tree.links
    N.remove(N["Principled BSDF"])
    emission = N.new("ShaderNodeEmission")
    L.new(emission.outputs[0], N["Material Output"].inputs["Surface"])
    if kind == "image":
        tex = N.new("ShaderNodeTexImage")
        tex.image = image
        tex.extension = "EXTEND"
        L.new(N.new("ShaderNodeTexCoord").outputs["Window"], tex.inputs["Vector"])
        L.new(tex.outputs["Color"], emission.inputs["Color"])
        return m
    rgb_a = N.new("ShaderNodeRGB")
    rgb_a.outputs[0].default_value = (*a, 1)
    if kind == "solid":
        L.new(rgb_a.outputs[0], emission.inputs["Color"])
        return m
    rgb_b = N.new("ShaderNodeRGB")
    rgb_b.outputs[0].default_value = (*b, 1)
    window = N.new("ShaderNodeTexCoord").outputs["Window"]
    if kind == "gradient":
        y = N.new("ShaderNodeSeparateXYZ")
        L.new(window, y.inputs[0])
        fac = y.outputs["Y"]
    else:
        node, output, scale, props = BACKGROUND_PATTERNS[kind]
        fac = _out(N, L, node, window, output, scale=scale, **props)
    L.new(_mix(N, L, rgb_a.outputs[0], rgb_b.outputs[0], fac), emission.inputs["Color"])
    return m


def _attribute(N, name: str):
    """The shaded object's custom property `name`, as a shader input."""
    node = N.new("ShaderNodeAttribute")
    node.attribute_type = "OBJECT"
    node.attribute_name = name
    return node


def _threshold(N, L, value, edge: float, op: str = "GREATER_THAN"):
    node = N.new("ShaderNodeMath")
    node.operation = op
    L.new(value, node.inputs[0])
    node.inputs[1].default_value = edge
    return node.outputs[0]


def _mix(N, L, a, b, factor):
    node = N.new("ShaderNodeMix")
    node.data_type = "RGBA"
    L.new(factor, node.inputs["Factor"])
    L.new(a, node.inputs[6])
    L.new(b, node.inputs[7])
    return node.outputs[2]


def _mesh_object(name: str, build) -> bpy.types.Object:
    """A mesh built by bmesh's operators, written out in a canonical order. Those operators
    number the faces (and which corner a face starts from) in an order that follows memory
    addresses, so it changes from process to process (the UV spheres': the sphere, the capsule,
    the ball), and with it the last bit of the vertex normals Blender computes, and so some
    pixels of the smooth shapes. Here vertices go by position, each face starts from its lowest
    vertex (winding kept), and the faces are sorted: the same mesh in every process."""
    bm = bmesh.new()
    build(bm)
    bm.verts.index_update()
    positions = [tuple(v.co) for v in bm.verts]  # float32 as Python floats: exact
    faces = [[v.index for v in f.verts] for f in bm.faces]
    bm.free()
    order = sorted(range(len(positions)), key=positions.__getitem__)
    new_index = {old: new for new, old in enumerate(order)}
    canonical = []
    for face in faces:
        face = [new_index[i] for i in face]
        first = face.index(min(face))
        canonical.append(tuple(face[first:] + face[:first]))
    me = bpy.data.meshes.new(name)
    me.from_pydata([positions[i] for i in order], [], sorted(canonical))
    me.update()
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    return ob


def _capsule(bm) -> None:
    bmesh.ops.create_uvsphere(bm, u_segments=24, v_segments=16, radius=0.55)
    for v in bm.verts:  # push the hemispheres apart
        if abs(v.co.z) > 1e-6:
            v.co.z += math.copysign(0.4, v.co.z)


def _make_shapes() -> dict:
    shapes = {
        "cube": _mesh_object("cube", lambda bm: bmesh.ops.create_cube(bm, size=1.3)),
        "sphere": _mesh_object("sphere", lambda bm: bmesh.ops.create_uvsphere(
            bm, u_segments=32, v_segments=16, radius=0.85)),
        "cylinder": _mesh_object("cylinder", lambda bm: bmesh.ops.create_cone(
            bm, cap_ends=True, segments=32, radius1=0.65, radius2=0.65, depth=1.5)),
        "cone": _mesh_object("cone", lambda bm: bmesh.ops.create_cone(
            bm, cap_ends=True, segments=32, radius1=0.85, radius2=0.0, depth=1.6)),
        "icosphere": _mesh_object("icosphere", lambda bm: bmesh.ops.create_icosphere(
            bm, subdivisions=1, radius=0.95)),
        "capsule": _mesh_object("capsule", _capsule),
    }
    bpy.ops.mesh.primitive_torus_add(major_radius=0.7, minor_radius=0.28, major_segments=48,
                                     minor_segments=16, rotation=(math.radians(60), 0, 0))
    shapes["torus"] = bpy.context.active_object
    bpy.ops.mesh.primitive_monkey_add(size=1.5)
    shapes["monkey"] = bpy.context.active_object
    for name, ob in shapes.items():
        ob.name = name
        for p in ob.data.polygons:
            p.use_smooth = name in ("sphere", "capsule", "torus", "monkey")
    return shapes


def _import_mesh(path: str) -> bpy.types.Object:
    importer = {".obj": bpy.ops.wm.obj_import, ".ply": bpy.ops.wm.ply_import,
                ".stl": bpy.ops.wm.stl_import}[Path(path).suffix.lower()]
    before = set(bpy.data.objects)
    importer(filepath=str(Path(path).resolve()))
    new = [ob for ob in bpy.data.objects if ob not in before and ob.type == "MESH"]
    ob = new[0]
    for extra in new[1:]:  # one object per file: join the parts
        bpy.data.objects.remove(extra)
    # centre it and scale it to the primitives' size (about 1.6 across)
    corners = [ob.matrix_world @ Vector(c) for c in ob.bound_box]
    centre = sum(corners, Vector()) / 8
    extent = max((max(c[i] for c in corners) - min(c[i] for c in corners)) for i in range(3))
    ob.data.transform(Matrix.Translation(-centre))
    ob.data.transform(Matrix.Scale(1.6 / max(extent, 1e-6), 4))
    ob.location = (0, 0, 0)
    ob.rotation_euler = (0, 0, 0)
    ob.scale = (1, 1, 1)
    return ob


def _make_occluders(scene) -> dict:
    obs = {
        "bar": _mesh_object("occluder-bar", lambda bm: bmesh.ops.create_cube(bm, size=1.0)),
        "box": _mesh_object("occluder-box", lambda bm: bmesh.ops.create_cube(bm, size=0.7)),
        "ball": _mesh_object("occluder-ball", lambda bm: bmesh.ops.create_uvsphere(
            bm, u_segments=24, v_segments=12, radius=0.4)),
    }
    obs["bar"].data.transform(Matrix.Diagonal((0.22, 0.22, 2.4, 1)))
    m = bpy.data.materials.new("occluder")
    m.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.3, 0.28, 0.25, 1)
    for ob in obs.values():
        ob.pass_index = OCCLUDER
        ob.data.materials.append(m)
        _show(ob, False)
    return obs


def _setup_device(scene, device: str) -> str:
    """CUDA/OptiX when asked for (gpu) or available (auto); otherwise the CPU."""
    scene.cycles.device = "CPU"
    if device == "cpu":
        return "CPU"
    try:
        prefs = bpy.context.preferences.addons["cycles"].preferences
    except KeyError:
        return "CPU"
    for backend in ("OPTIX", "CUDA", "HIP", "ONEAPI"):
        try:
            prefs.compute_device_type = backend
        except TypeError:  # not built into this Blender
            continue
        prefs.refresh_devices()
        gpus = [d for d in prefs.devices if d.type == backend]
        if gpus:
            for d in prefs.devices:
                d.use = d.type == backend
            scene.cycles.device = "GPU"
            return f"GPU ({backend}: {', '.join(d.name for d in gpus)})"
    prefs.compute_device_type = "NONE"
    if device == "gpu":
        from ..errors import CuelabError
        raise CuelabError("render.device is 'gpu' but Blender found no CUDA/OptiX/HIP/oneAPI "
                          "device; use 'auto' to fall back to the CPU")
    return "CPU"
