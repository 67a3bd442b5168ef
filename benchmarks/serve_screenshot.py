"""A screenshot of the live page for the README: one MNIST test digit drawn and read.

    python benchmarks/serve_screenshot.py            # writes plot/serve.png

Starts the server in this process, opens the page in headless Chromium (Debian's
``chromium`` and ``chromium-driver``), drops a test digit on the page through its file
chooser, waits for every layer to show and saves the whole page.
"""

import argparse
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.serve.live import LivePage  # noqa: E402 (the project runs from its root)
from core.serve.server import LiveServer  # noqa: E402
from data import load_dataset  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "plot" / "serve.png")
    parser.add_argument("--index", type=int, default=0, help="which MNIST test digit (default 0)")
    args = parser.parse_args()

    server = LiveServer(("127.0.0.1", 0), LivePage(ROOT / "best_params.npz"), log=None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1300,1500"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        digit = load_dataset("mnist").x_test[args.index, 0]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "digit.png"
            Image.fromarray(255 - np.kron(digit, np.ones((10, 10), np.uint8))).save(path)
            driver.get(server.url)
            chooser = driver.find_element(By.ID, "file")
            driver.execute_script("arguments[0].style.display = 'block'", chooser)
            chooser.send_keys(str(path))
            body = driver.find_element(By.TAG_NAME, "body")
            WebDriverWait(driver, 120).until(lambda _: body.get_attribute("data-prediction"))
        driver.execute_script("arguments[0].style.display = 'none'", chooser)
        WebDriverWait(driver, 120).until(
            lambda d: d.execute_script(
                "return [...document.images].every(i => !i.src || i.naturalWidth > 0)"
            )
        )
        height = driver.execute_script("return document.body.scrollHeight")
        # a headless window does not grow past the screen: make the viewport the page's height
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1300, "height": height + 20, "deviceScaleFactor": 1, "mobile": False},
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(f"{args.out}: prediction {body.get_attribute('data-prediction')}")
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
