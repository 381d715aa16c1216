"""The search page in a real headless Chromium (Selenium, system browser and driver, nothing downloaded):
a query shows thumbnails, 👍 on a result reruns the search with it as an example and the results change."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fixtures_index import real_rasters, running_server, session_real_index

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1100"]

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("chromium/chromedriver not installed and `make browser-deps` could not install them "
                "(apt-get install chromium chromium-driver)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install selenium)")
if not real_rasters():
    pytest.skip("../shared/data absent", allow_module_level=True)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    from spectraclip.models.loading import load_model
    from spectraclip.serve.app import create_app

    model = load_model("tiny-test", bands="s2-l2a").set_input_options(allow_resize=True)  # 32-px model, 224-px tiles
    _, idx = session_real_index(tmp_path_factory, model)
    with running_server(create_app(idx, model)) as url:
        yield url


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


LOADED = """return [...document.querySelectorAll('#results .card img')]
             .every(i => i.complete && i.naturalWidth > 0) && document.querySelectorAll('#results .card').length"""
IDS = "return [...document.querySelectorAll('#results .card')].map(c => c.dataset.id)"


@pytest.mark.slow  # Chromium through a query and a vote (~3 s): `make test` only
def test_query_thumbnails_thumbs_up_changes_results(base_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(base_url + "/")
    box = browser.find_element(By.ID, "q")
    box.send_keys("coastal erosion on sandy beach", Keys.ENTER)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.execute_script(LOADED) == 24)
    before = browser.execute_script(IDS)
    assert len(set(before)) == 24
    assert "results in" in browser.find_element(By.ID, "status").text
    sizes = browser.execute_script("return [...document.querySelectorAll('#results img')].map(i => i.naturalWidth)")
    assert set(sizes) == {128}  # real PNG thumbnails, rendered by the server from the rasters
    # footprints drawn on the canvas (blue-ish result boxes)
    painted = browser.execute_script("""const c = document.getElementById('map'); const g = c.getContext('2d');
        const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 150 && d[i] < 120) n++; return n;""")
    assert painted > 50
    png = tmp_path / "page.png"
    browser.save_screenshot(str(png))
    shots = os.environ.get("SPECTRACLIP_SCREENSHOTS")  # a folder: keep the screenshots for the docs
    if shots:
        shutil.copy(png, Path(shots) / "search-page.png")
    liked = before[2]
    browser.find_elements(By.CSS_SELECTOR, "#results .card .like")[2].click()
    wait.until(lambda d: d.execute_script(IDS) != before and d.execute_script(LOADED) == 24)
    after = browser.execute_script(IDS)
    assert liked not in after and after != before
    assert liked in browser.find_element(By.ID, "examples").text
    assert browser.execute_script("return window.spectraclip.state.like") == [liked]
    if shots:
        browser.save_screenshot(str(Path(shots) / "search-page-liked.png"))
    # false colour toggle swaps every thumbnail for the B08,B04,B03 rendering
    browser.find_element(By.ID, "false-colour").click()
    wait.until(lambda d: d.execute_script(LOADED) == 24)
    srcs = browser.execute_script("return [...document.querySelectorAll('#results img')].map(i => i.src)")
    assert all("style=false-colour" in s for s in srcs)
    csv = browser.execute_script("return window.spectraclip.csv()").splitlines()
    geo = browser.execute_script("return window.spectraclip.geojson()")
    assert len(csv) == 25 and csv[0].startswith("rank,id,score") and len(geo["features"]) == 24
    assert geo["features"][0]["geometry"]["type"] == "Polygon"
    # a bbox filter from the form reruns the search with only items inside it
    for name, v in zip(("west", "south", "east", "north"), ("-10", "35", "5", "50"), strict=True):
        browser.find_element(By.ID, name).send_keys(v)
    browser.find_element(By.ID, "go").click()
    wait.until(lambda d: "pass the filters" in d.find_element(By.ID, "status").text)
    boxes = browser.execute_script("return window.spectraclip.state.hits.map(h => h.bbox)")
    assert boxes and all(b[0] <= 5 and b[2] >= -10 and b[1] <= 50 and b[3] >= 35 for b in boxes)
