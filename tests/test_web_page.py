"""The model page (`GET /`) in a real headless Chromium driven by Selenium: a photo uploaded
through the page gets the same five labels as `inception-hub classify`, and the server's limits
hold for requests made from the page."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import IMAGES
from inception_hub.cli import main
from inception_hub.images import load_image
from inception_hub.serve import Limits
from inception_hub.similar.index import Index
from test_serve import Running, http

pytestmark = pytest.mark.slow  # starts servers and a browser

GRACE = IMAGES / "grace_hopper.jpg"


def _binary(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    pytest.fail(f"{names[0]} not found: `make test` installs Debian's chromium and chromium-driver packages")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser", "google-chrome")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(_binary("chromedriver")))
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(models):
    s = Running(models, max_batch=8, batch_timeout_ms=5, workers=1, grpc=False)
    yield s
    s.shutdown()


def upload(driver, path, answers: int) -> None:
    """Give the page a photo and wait until it has shown its answer number `answers` (or an error)."""
    driver.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(driver, 120).until(
        lambda d: (
            d.find_element(By.TAG_NAME, "body").get_attribute("data-answered") == str(answers)
            or d.find_element(By.ID, "error").text
        )
    )


def explained(driver, n: int) -> None:
    WebDriverWait(driver, 120).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-explained") == str(n)
    )


def canvas_pixels(driver, heat: np.ndarray, cell: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """RGB of the map canvas at the centre of `cell` of the map (where smoothing leaves the cell's
    value), and of the photo's central crop drawn alone at the same size."""
    script = """const c = document.getElementById("cam-canvas"), img = document.getElementById("preview");
        const [y, x] = [Math.floor(c.height * arguments[0]), Math.floor(c.width * arguments[1])];
        const [h, w] = [img.naturalHeight, img.naturalWidth];
        const top = Math.trunc((h - h * 0.875) / 2), left = Math.trunc((w - w * 0.875) / 2);
        const plain = Object.assign(document.createElement("canvas"), { width: c.width, height: c.height });
        plain.getContext("2d").drawImage(img, left, top, w - 2 * left, h - 2 * top, 0, 0, c.width, c.height);
        const at = (canvas) => Array.from(canvas.getContext("2d").getImageData(x, y, 1, 1).data).slice(0, 3);
        return [at(c), at(plain)];"""
    shown, photo = driver.execute_script(script, (cell[0] + 0.5) / heat.shape[0], (cell[1] + 0.5) / heat.shape[1])
    return np.array(shown, float), np.array(photo, float)


def shown(driver) -> list[tuple[str, float]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#top5 li")
    return [
        (
            r.find_element(By.CLASS_NAME, "label").text,
            float(r.find_element(By.CLASS_NAME, "score").get_attribute("data-score")),
        )
        for r in rows
    ]


def test_the_page_shows_what_classify_returns(server, browser, v1_ckpt, capsys, tmp_path):
    browser.get(server.url + "/")
    names = [o.text for o in Select(browser.find_element(By.ID, "model")).options]
    assert names == ["inception_v1", "inception_v1_feature_vector"]
    about = browser.find_element(By.ID, "about").text
    # Where the weights came from, so synthetic or imported weights are never taken for the release's.
    assert "1001 classes" in about and "Weights: the checkpoint " in about and ".ckpt" in about, about
    upload(browser, GRACE, 1)
    assert not browser.find_element(By.ID, "error").is_displayed()

    assert main(["classify", str(GRACE), "--checkpoint", v1_ckpt, "--format", "json", "--no-progress"]) == 0
    expected = json.loads(capsys.readouterr().out)[0]["predictions"]
    got = shown(browser)
    assert [label for label, _ in got] == [p["label"] for p in expected]
    np.testing.assert_allclose([s for _, s in got], [p["score"] for p in expected], atol=1e-4)
    bars = [b.get_attribute("style") for b in browser.find_elements(By.CSS_SELECTOR, "#top5 .bar")]
    assert len(bars) == 5 and all("width" in b for b in bars)

    # The class activation map of the top class, drawn over the crop the network sees.
    explained(browser, 1)
    cam = browser.find_element(By.ID, "cam")
    assert cam.is_displayed() and cam.get_attribute("data-label") == expected[0]["label"]
    module = server.core.models["inception_v1"].module
    heat = module.explain(load_image(GRACE, module.expected_image_size)).heatmap
    for cell in (np.unravel_index(heat.argmax(), heat.shape), np.unravel_index(heat.argmin(), heat.shape)):
        v = float(heat[cell])  # the page mixes in 55% x v of its blue-to-red ramp
        ramp = 255 * np.array([v, 1 - abs(2 * v - 1), 1 - v])
        shown_, photo = canvas_pixels(browser, heat, cell)
        np.testing.assert_allclose(shown_, photo * (1 - 0.55 * v) + ramp * 0.55 * v, atol=12)
    shot = tmp_path / "page.png"  # to look at: pytest --basetemp=DIR
    assert browser.save_screenshot(str(shot))
    assert Image.open(shot).size[0] >= 1000
    # A click on a label maps that class.
    browser.find_elements(By.CSS_SELECTOR, "#top5 li")[2].click()
    explained(browser, 2)
    assert cam.get_attribute("data-label") == expected[2]["label"]
    assert browser.find_elements(By.CSS_SELECTOR, "#top5 li")[2].get_attribute("class") == "mapped"

    # Another model answers for the same photo; the address follows the choice.
    Select(browser.find_element(By.ID, "model")).select_by_visible_text("inception_v1_feature_vector")
    WebDriverWait(browser, 120).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-answered") == "2"
    )
    assert browser.find_element(By.ID, "vector").text.startswith("1024 floats")
    assert browser.current_url.endswith("/models/inception_v1_feature_vector")
    assert not browser.find_elements(By.CSS_SELECTOR, "#top5 li")


def test_the_page_keeps_the_server_limits(models, browser, tmp_path):
    big = tmp_path / "noise.png"  # incompressible: far over the body limit below
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (400, 400, 3), np.uint8)).save(big)
    s = Running(models, grpc=False, limits=Limits(max_body_bytes=200_000, max_pixels=100_000))
    try:
        browser.get(s.url + "/models/inception_v1")
        assert Select(browser.find_element(By.ID, "model")).first_selected_option.text == "inception_v1"
        upload(browser, big, 1)
        assert "accepts at most 0.2 MB" in browser.find_element(By.ID, "error").text
        upload(browser, GRACE, 2)  # 517x606: small enough to send, over the pixel limit
        error = browser.find_element(By.ID, "error").text
        assert "could not answer" in error and "100000" in error.replace(",", ""), error
        assert not browser.find_elements(By.CSS_SELECTOR, "#top5 li")
    finally:
        s.shutdown()


def test_page_routes(server):
    with urllib.request.urlopen(server.url + "/") as r:
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        page = r.read().decode()
    assert 'src="/static/page.js"' in page and "http" not in page.split("<body>")[0]  # nothing from elsewhere
    assert http("GET", server.url + "/static/page.css")[0] == 200
    status, body = http("GET", server.url + "/models/resnet")
    assert status == 404 and "inception_v1_feature_vector" in json.loads(body)["error"]
    assert http("GET", server.url + "/static/../rest.py")[0] == 404
    assert http("GET", server.url + "/static/index.html")[0] == 404


def test_with_an_index_the_page_shows_the_most_similar_photos(models, browser, v1_ckpt, tmp_path, capsys):
    photos = sorted((IMAGES / "imagenet-sample").glob("*.JPEG"))[:30]
    ix = tmp_path / "ix"
    argv = ["index", *map(str, photos), "-o", str(ix), "--model", "inception_v1/feature_vector"]
    assert main([*argv, "--checkpoint", v1_ckpt, "--no-progress"]) == 0
    index = Index.load(ix)
    s = Running(models, grpc=False, index=index)
    try:
        browser.get(s.url + "/")
        upload(browser, photos[7], 1)
        WebDriverWait(browser, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-similar"))
        items = browser.find_elements(By.CSS_SELECTOR, "#neighbours li")
        names = [i.find_element(By.CLASS_NAME, "name").text for i in items]
        sims = [float(i.find_element(By.CLASS_NAME, "similarity").text) for i in items]
        vector = models[1].module(load_image(photos[7], (224, 224))[None])
        expected = index.query(vector, 8)[0]
        assert names == [Path(h.path).name for h in expected] and names[0] == photos[7].name
        np.testing.assert_allclose(sims, [h.score for h in expected], atol=1e-3)  # shown with 3 decimals
        loaded = browser.execute_script(
            "return [...document.querySelectorAll('#neighbours img')].map(i => i.complete && i.naturalWidth)"
        )
        assert len(loaded) == 8 and all(w and w > 0 for w in loaded)
        browser.save_screenshot(str(tmp_path / "similar.png"))

        assert http("POST", s.url + "/models/inception_v1/similar", {"b64": "", "k": 0})[0] == 400
        status, body = http("POST", s.url + "/models/inception_v1/similar", {"k": 3})
        assert status == 400 and "b64" in json.loads(body)["error"]
        assert http("GET", s.url + "/index/thumbnails/30")[0] == 404
    finally:
        s.shutdown()
