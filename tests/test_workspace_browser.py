"""The map workspace in a real headless Chromium: tiles render (one pixel checked against the COG), a click shows
what the products say there, "find similar" queries, 👍/👎 label, Learn ranks, the exports download."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("rio_tiler")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("chromium/chromedriver not installed", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
import fixtures_workspace as fw  # noqa: E402
from fixtures_index import running_server  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900"]
IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


@pytest.mark.slow  # Chromium through a whole labelling session (~7 s): `make test` only
def test_map_label_learn_export(tmp_path):
    import rasterio
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from spectraclip.serve.app import create_app

    idx = fw.synthetic_index(tmp_path / "ws")
    layers = [fw.class_map(tmp_path / "map.tif"), fw.change_map(tmp_path / "chg.tif"), fw.scene(tmp_path / "scene.tif")]
    os.environ.setdefault("SE_OFFLINE", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(flag)
    with running_server(create_app(idx, layers=layers, labels=tmp_path / "l.sqlite", warm=False)) as url:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
        driver.set_page_load_timeout(30)
        wait = WebDriverWait(driver, 30)
        try:
            driver.get(f"{url}/map?target=c1&who=browser&view=49.75,5.25,11&layers=map,chg")
            wait.until(lambda d: d.execute_script(
                "return [...document.querySelectorAll('.layer-map img.leaflet-tile-loaded')].length") >= 2)
            # one rendered pixel against the COG: the centre pixel of a loaded class-map tile
            src, rgba = driver.execute_script("""
                const img = [...document.querySelectorAll('.layer-map img.leaflet-tile-loaded')][0];
                const c = document.createElement('canvas'); c.width = c.height = 256;
                const g = c.getContext('2d'); g.drawImage(img, 0, 0);
                return [img.src, [...g.getImageData(128, 128, 1, 1).data]];""")
            z, x, y = (int(v) for v in src.rsplit("/", 3)[-3:][:2] + [src.rsplit("/", 1)[-1].split(".")[0]])
            import morecantile

            tms = morecantile.tms.get("WebMercatorQuad")
            b = tms.xy_bounds(morecantile.Tile(x, y, z))
            lon, lat = tms.lnglat(b.left + 128.5 / 256 * (b.right - b.left), b.top - 128.5 / 256 * (b.top - b.bottom))
            with rasterio.open(layers[0]) as ds:
                row, col = ds.index(lon, lat)
                if 0 <= row < ds.height and 0 <= col < ds.width:
                    cls = int(ds.read(1, window=((row, row + 1), (col, col + 1)))[0, 0])
                    assert tuple(rgba) == fw.COLOURS[cls], (src, rgba, cls)
            # click the map: the popup says what the products say and offers find similar
            driver.execute_script("map.fire('click', {latlng: L.latLng(49.75, 5.25)})")
            wait.until(lambda d: "River" in d.find_element(By.CSS_SELECTOR, ".leaflet-popup-content").text)
            driver.find_element(By.CSS_SELECTOR, ".leaflet-popup-content button[data-similar]").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) >= 10)
            buttons = driver.find_elements(By.CSS_SELECTOR, "#results li")
            for i, li in enumerate(buttons[:10]):
                li.find_element(By.CSS_SELECTOR, f"button[data-label={'positive' if i < 5 else 'negative'}]").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results li.labelled").__len__() >= 10)
            driver.find_element(By.ID, "learn").click()
            wait.until(lambda d: "cross-validated accuracy" in d.find_element(By.ID, "learn-result").text)
            assert len(driver.find_elements(By.CSS_SELECTOR, "#uncertain li")) == 20
            assert "target=c1" in driver.current_url and "view=" in driver.current_url
            n = driver.execute_script("""const cb = arguments[0];
                fetch(document.getElementById('export-geojson').href).then(r => r.json())
                  .then(j => cb(j.features.length));""") if False else None
            gj = driver.execute_async_script("""const cb = arguments[arguments.length - 1];
                fetch(document.getElementById('export-geojson').href).then(r => r.json())
                  .then(j => cb(j.features.map(f => f.properties.kind)));""")
            assert gj.count("label") == 10 and gj.count("candidate") == 50, n
            probe = driver.execute_async_script("""const cb = arguments[arguments.length - 1];
                fetch(document.getElementById('export-probe').href).then(r => r.json()).then(j => cb(j.classes));""")
            assert probe == ["not c1", "c1"]
            IMG.mkdir(parents=True, exist_ok=True)
            # two clicks in a row: one popup, for the second place (the first click's answer is dropped)
            driver.execute_script("map.fire('click', {latlng: L.latLng(49.70, 5.30)}); "
                                  "map.fire('click', {latlng: L.latLng(49.85, 5.15)})")
            wait.until(lambda d: "change" in d.find_element(By.CSS_SELECTOR, ".leaflet-popup-content").text)
            time.sleep(0.5)
            popups = driver.find_elements(By.CSS_SELECTOR, ".leaflet-popup")
            assert len(popups) == 1 and "49.85000" in popups[0].text
            driver.save_screenshot(str(IMG / "workspace-map.png"))
            # a pinned popup stays when the next place is clicked
            driver.find_element(By.CSS_SELECTOR, ".leaflet-popup-content button[data-pin]").click()
            driver.execute_script("map.fire('click', {latlng: L.latLng(49.75, 5.25)})")
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".leaflet-popup")) == 2)
            pinned = driver.find_elements(By.CSS_SELECTOR, ".leaflet-popup.pinned")
            assert len(pinned) == 1 and "49.85000" in pinned[0].text and "pinned" in pinned[0].text
            driver.execute_script("map.fire('click', {latlng: L.latLng(49.72, 5.22)})")
            wait.until(lambda d: "49.72000" in d.find_element(By.CSS_SELECTOR, ".leaflet-popup:not(.pinned)").text)
            assert len(driver.find_elements(By.CSS_SELECTOR, ".leaflet-popup")) == 2
            # the graticule: lines at least 96 px apart at every zoom, labels in -180..180 and +-85
            spacing = driver.execute_script(
                "return [...Array(21).keys()].map((z) => gridStep(z) * 256 * 2 ** z / 360)")
            assert min(spacing) >= 96 and max(spacing) < 1000, spacing
            assert driver.execute_script("return [degrees(-0.00001, 0.5), degrees(45, 15), degrees(5.25, 0.05)]") \
                == ["0.0°", "45°", "5.25°"]
            for z, name in ((3, "graticule-z3"), (9, "graticule-z9")):
                driver.execute_script(f"map.setView([49.75, 5.25], {z}, {{animate: false}})")
                time.sleep(1.0)
                driver.save_screenshot(str(tmp_path / f"{name}.png"))
        finally:
            driver.quit()
