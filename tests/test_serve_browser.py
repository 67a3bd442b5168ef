"""The live page in a real browser: headless Chromium driven by Selenium.

Chromium and its driver are Debian's packages (``chromium``, ``chromium-driver``; .ci/run
installs them); both are named by path, so Selenium never looks for a driver online.
"""

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.interaction import POINTER_PEN
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.serve.live import LivePage
from core.serve.server import LiveServer
from data import load_dataset
from model.params_io import load_model
from model.shapes import trace_shapes

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "best_params.npz"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BROWSER_PACKAGES = "sudo apt-get install chromium chromium-driver"  # as .ci/run does
if missing := [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]:
    pytest.skip(f"the live page's browser test needs {' and '.join(missing)}: "
                f"{BROWSER_PACKAGES}", allow_module_level=True)  # fmt: skip
WAIT_S = 120  # a generous bound for a loaded CI machine; the wait ends as soon as it can

# A seven, in canvas pixels (280 x 280): the bar, then the stem.
SEVEN = [(70, 70), (130, 68), (210, 70), (180, 130), (150, 190), (130, 240)]


@pytest.fixture(scope="module")
def page_url():
    """The address of a live server on a free port, serving the shipped model."""
    server = LiveServer(("127.0.0.1", 0), LivePage(SHIPPED), log=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through the system chromedriver."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--window-size=1300,1700",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def layer_labels():
    """The top-level layer labels of the shipped model, as ``summary`` prints them."""
    model = load_model(SHIPPED)
    return [r.label for r in trace_shapes(model.blueprint, (1, 28, 28)) if r.depth == 0]


def draw(driver, points):
    """One pen stroke through ``points`` (canvas pixels), as pointer events."""
    canvas = driver.find_element(By.ID, "canvas")
    # Offsets count from the element's centre; the canvas is shown at its own size.
    half = canvas.size["width"] / 2, canvas.size["height"] / 2
    actions = ActionBuilder(driver, mouse=PointerInput(POINTER_PEN, "pen"))
    pen = actions.pointer_action
    x, y = points[0]
    pen.move_to(canvas, round(x - half[0]), round(y - half[1])).pointer_down()
    for x, y in points[1:]:
        pen.move_to(canvas, round(x - half[0]), round(y - half[1]))
    pen.pointer_up()
    actions.perform()


def wait_for_prediction(driver):
    """The predicted class, once the page has shown a whole answer."""
    body = driver.find_element(By.TAG_NAME, "body")
    return WebDriverWait(driver, WAIT_S).until(lambda _: body.get_attribute("data-prediction"))


def shown_percentages(driver):
    """{class name: the percentage its bar shows}."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#bars .bar-row")
    return {
        row.get_attribute("data-class"): float(
            row.find_element(By.CLASS_NAME, "pct").text.rstrip("%")
        )
        for row in rows
    }


def loaded(driver, selector):
    """How many of the images ``selector`` finds have been decoded (non-zero natural width)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".filter(i => i.complete && i.naturalWidth > 0).length",
        selector,
    )


def test_a_drawn_stroke_shows_the_class_probabilities_and_every_layer(browser, page_url, tmp_path):
    browser.get(page_url)
    draw(browser, SEVEN)
    shown = wait_for_prediction(browser)

    percentages = shown_percentages(browser)
    assert sorted(percentages) == [str(d) for d in range(10)]
    assert shown in percentages and percentages[shown] == max(percentages.values())
    assert sum(percentages.values()) == pytest.approx(100, abs=0.6)
    assert browser.find_element(By.ID, "prediction").text == shown

    labels = layer_labels()
    cards = browser.find_elements(By.CSS_SELECTOR, "#layers .layer")
    assert [card.get_attribute("data-layer") for card in cards] == labels
    assert all(card.find_element(By.TAG_NAME, "b").text in labels for card in cards)
    WebDriverWait(browser, WAIT_S).until(
        lambda d: loaded(d, "#layers img, #input, #saliency") == len(labels) + 2
    )
    browser.save_screenshot(str(tmp_path / "serve.png"))
    with Image.open(tmp_path / "serve.png") as screenshot:
        assert screenshot.width > 600

    # The page sent what the canvas holds: white paper, black ink.
    corner, centre = browser.execute_script(
        "const c = document.getElementById('canvas').getContext('2d');"
        "return [[...c.getImageData(2, 2, 1, 1).data], [...c.getImageData(140, 69, 1, 1).data]];"
    )
    assert corner == [255, 255, 255, 255] and centre[:3] == [0, 0, 0]

    browser.find_element(By.ID, "clear").click()
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-prediction") is None
    assert browser.find_elements(By.CSS_SELECTOR, "#layers .layer") == []


def test_a_chosen_picture_file_is_read_like_predict_reads_it(browser, page_url, tmp_path):
    ds = load_dataset("mnist")
    digit, label = ds.x_test[0, 0], int(ds.y_test[0])
    path = tmp_path / "digit.png"
    Image.fromarray(255 - np.kron(digit, np.ones((8, 8), np.uint8))).save(path)
    browser.get(page_url)
    chooser = browser.find_element(By.ID, "file")
    browser.execute_script("arguments[0].style.display = 'block'", chooser)
    chooser.send_keys(str(path))
    assert wait_for_prediction(browser) == str(label)


def test_the_model_tab_shows_the_blueprint_and_the_training_figures(browser, page_url):
    browser.get(page_url)
    browser.find_element(By.CSS_SELECTOR, ".tab[data-tab='model']").click()
    summary = browser.find_element(By.ID, "summary")
    WebDriverWait(browser, WAIT_S).until(lambda _: "total parameters" in summary.text)
    assert all(label in summary.text for label in layer_labels())
    WebDriverWait(browser, WAIT_S).until(lambda d: loaded(d, "#figures img") == 2)
    assert not browser.find_element(By.ID, "model").get_attribute("hidden")
    assert browser.find_element(By.ID, "draw").get_attribute("hidden")
