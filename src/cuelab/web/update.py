"""Refresh the vendored browser assets (vendor/) and DVC's plots page (dvc_plots.html) from npm.

    python src/cuelab/web/update.py

Each package comes from the npm registry as its published tarball (`npm pack`, which checks the
tarball against the registry's integrity hash); the files the pages load are copied byte for byte,
with the package's licence, and vendor/MANIFEST.json records each file's sha256. Then
dvc_plots.html is built: DVC's own page (dvc_render.html.PAGE_HTML) with Vega, Vega-Lite and
vega-embed inlined where DVC puts its CDN <script> tags, so `dvc plots show` / `dvc plots diff`
write a page that draws with no network.

The versions are the ones the pages ask for: DVC's renderer (dvc_render.vega.VegaRenderer.SCRIPTS)
pins vega@5.20.2, vega-lite@5.2.0 and vega-embed@6.18.2; Great Expectations' Data Docs templates
(great_expectations/render/view/templates/page.j2, js_script_imports.j2) name the rest.
Run it again after upgrading dvc-render or great-expectations; tests/test_pages.py fails while a
page still asks for something this folder does not hold.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor"

# npm package, version, SPDX licence, the package's licence file (None: the package ships none,
# LICENSE_TEXTS has it), and {file in the package: where it goes under vendor/<folder>/}.
PACKAGES = [
    ("vega", "5.20.2", "BSD-3-Clause", "LICENSE", {"build/vega.min.js": "vega.min.js"}),
    ("vega-lite", "5.2.0", "BSD-3-Clause", "LICENSE",
     {"build/vega-lite.min.js": "vega-lite.min.js"}),
    ("vega-embed", "6.18.2", "BSD-3-Clause", "LICENSE",
     {"build/vega-embed.min.js": "vega-embed.min.js"}),
    ("jquery", "3.7.1", "MIT", "LICENSE.txt", {"dist/jquery.min.js": "jquery.min.js"}),
    ("popper.js", "1.12.9", "MIT", None, {"dist/umd/popper.min.js": "umd/popper.min.js"}),
    ("bootstrap", "4.3.1", "MIT", "LICENSE",
     {"dist/css/bootstrap.min.css": "css/bootstrap.min.css",
      "dist/js/bootstrap.min.js": "js/bootstrap.min.js"}),
    ("bootstrap-table", "1.19.1", "MIT", "LICENSE",
     {"dist/bootstrap-table.min.css": "bootstrap-table.min.css",
      "dist/bootstrap-table.min.js": "bootstrap-table.min.js",
      "dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
          "extensions/filter-control/bootstrap-table-filter-control.min.js"}),
    # Data Docs take the filter-control extension's stylesheet from the release before
    ("bootstrap-table", "1.19.0", "MIT", "LICENSE",
     {"dist/extensions/filter-control/bootstrap-table-filter-control.css":
          "extensions/filter-control/bootstrap-table-filter-control.css",
      "dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
          "extensions/filter-control/bootstrap-table-filter-control.min.css"}),
    ("bootstrap-datepicker", "1.9.0", "Apache-2.0", "LICENSE",
     {"dist/css/bootstrap-datepicker.min.css": "css/bootstrap-datepicker.min.css",
      "dist/js/bootstrap-datepicker.min.js": "js/bootstrap-datepicker.min.js"}),
    # Data Docs link the unminified bootstrap-prefers-dark.css (863 KB); the package's own
    # minified build of the same release (150 KB) stands in for it
    ("@forevolve/bootstrap-dark", "1.1.0", "MIT", "LICENSE",
     {"dist/css/bootstrap-prefers-dark.min.css": "css/bootstrap-prefers-dark.min.css"}),
    # icons: the stylesheet and its web fonts (woff2 only: every browser that runs the pages
    # reads it, and the stylesheet names it first)
    ("@fortawesome/fontawesome-free", "6.6.0", "CC-BY-4.0 AND OFL-1.1 AND MIT", "LICENSE.txt",
     {"css/all.min.css": "css/all.min.css",
      **{f"webfonts/{f}.woff2": f"webfonts/{f}.woff2" for f in (
          "fa-brands-400", "fa-regular-400", "fa-solid-900", "fa-v4compatibility")}}),
]

# popper.js 1.12.9 ships no licence file; its package.json says MIT and its files' header names
# the author
LICENSE_TEXTS = {("popper.js", "1.12.9"): """The MIT License (MIT)

Copyright (c) 2016 Federico Zivolo and contributors

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""}

# DVC's page; `{scripts}` (where DVC writes its CDN <script> tags) becomes the inlined libraries
PLOTS_PAGE_SCRIPTS = ("vega", "vega-lite", "vega-embed")


# DVC's page calls vegaEmbed('#id', spec) for each plot; these defaults draw SVG (the words in a
# chart can be found, copied and read back by tests/test_pages.py) and leave out the menu's link
# to the online Vega editor (the page is for offline use; export and source stay)
EMBED_DEFAULTS = """<script>/* cuelab: vega-embed defaults for this page */
window.vegaEmbed = (function (embed) {
  var withDefaults = function (el, spec, opt) {
    return embed(el, spec, Object.assign({renderer: "svg", actions: {
      "export": true, source: true, compiled: true, editor: false}}, opt || {}));
  };
  return Object.assign(withDefaults, embed);
})(window.vegaEmbed);
</script>"""


def folder(name: str, version: str) -> str:
    return f"{name.rsplit('/', 1)[-1]}-{version}"


def fetch(name: str, version: str, into: Path) -> Path:
    """The package's files from its npm tarball (npm checks the registry's integrity hash)."""
    out = subprocess.run(["npm", "pack", f"{name}@{version}", "--json", "--pack-destination",
                          str(into)], capture_output=True, text=True, check=True).stdout
    info = json.loads(out)[0]
    root = into / folder(name, version)
    with tarfile.open(into / info["filename"]) as tar:
        tar.extractall(root, filter="data")
    return root / "package", info["integrity"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vendor() -> list[dict]:
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    manifest = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, version, spdx, licence, files in PACKAGES:
            package, integrity = fetch(name, version, Path(scratch))
            dest = VENDOR / folder(name, version)
            for source, target in files.items():
                (dest / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(package / source, dest / target)
            licence_file = dest / (licence or "LICENSE")
            if licence:
                shutil.copyfile(package / licence, licence_file)
            else:
                licence_file.write_text(LICENSE_TEXTS[name, version])
            manifest.append({
                "name": name, "version": version, "license": spdx,
                "license_file": str(licence_file.relative_to(VENDOR)),
                "tarball": f"https://registry.npmjs.org/{name}/-/"
                           f"{name.rsplit('/', 1)[-1]}-{version}.tgz",
                "integrity": integrity,
                "files": {str((dest / t).relative_to(VENDOR)): {
                    "from": s, "bytes": (dest / t).stat().st_size, "sha256": sha256(dest / t)}
                    for s, t in files.items()}})
    (VENDOR / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def plots_page(manifest: list[dict]) -> str:
    """DVC's page with the three libraries inlined (a page opened as a file, with no network,
    must draw; a relative path would break wherever `dvc plots show -o` writes it)."""
    from dvc_render.html import PAGE_HTML

    scripts = []
    for entry in (e for n in PLOTS_PAGE_SCRIPTS for e in manifest if e["name"] == n):
        (path,) = entry["files"]
        code = (VENDOR / path).read_text(encoding="utf-8")
        # inline: nothing in it may end the element or look like one of DVC's placeholders
        for bad in ("</script", "<!--", "{plot_divs}", "{scripts}", "{refresh_tag}"):
            if bad in code.lower():
                raise SystemExit(f"{path} holds {bad!r}: it cannot be inlined as it is")
        scripts.append(f"<script>/* {entry['name']}@{entry['version']} ({entry['license']}; "
                       f"licence: cuelab/web/vendor/{entry['license_file']}) */\n{code}\n"
                       "</script>")
    scripts.append(EMBED_DEFAULTS)
    page = PAGE_HTML.replace("<title>DVC Plot</title>", "<title>cuelab plots (DVC)</title>")
    page = page.replace("    {scripts}\n", "\n".join(scripts) + "\n")
    assert "{scripts}" not in page and "{plot_divs}" in page
    return page


def main() -> None:
    manifest = vendor()
    (HERE / "dvc_plots.html").write_text(plots_page(manifest), encoding="utf-8")
    total = sum(f["bytes"] for e in manifest for f in e["files"].values())
    print(f"vendored {len(manifest)} releases, {total / 1e6:.2f} MB; dvc_plots.html "
          f"{(HERE / 'dvc_plots.html').stat().st_size / 1e6:.2f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
