"""Screenshot of the model page for the README: serve a model, open the page in headless
Chromium, give it a photo, save the window as a PNG.

    python tools/page_screenshot.py OUT.png --photo PHOTO [--model inception_v1] [--checkpoint CKPT]

Without the official weights cached, pass a checkpoint (the README's image was made with the
synthetic reference weights, so its labels are arbitrary).
"""

from __future__ import annotations

import argparse
import asyncio
import threading

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from inception_hub.serve import ServingCore, build, run_server


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--photo", required=True)
    p.add_argument("--model", default="inception_v1")
    p.add_argument("--checkpoint")
    args = p.parse_args()

    core = ServingCore([build(args.model, args.checkpoint)])
    loop, stop, ready, port = asyncio.new_event_loop(), None, threading.Event(), []

    def serve() -> None:
        nonlocal stop
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()
        loop.run_until_complete(
            run_server(core, "127.0.0.1", 0, None, lambda r, _: (port.append(r), ready.set()), stop)
        )

    threading.Thread(target=serve, daemon=True).start()
    ready.wait(120)
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--window-size=1000,760"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(f"http://127.0.0.1:{port[0]}/")
        driver.find_element(By.ID, "file").send_keys(args.photo)
        body = (By.TAG_NAME, "body")
        WebDriverWait(driver, 120).until(lambda d: d.find_element(*body).get_attribute("data-answered"))
        if driver.find_element(By.ID, "top5").get_attribute("class") == "explains":  # a classifier: its map too
            WebDriverWait(driver, 120).until(lambda d: d.find_element(*body).get_attribute("data-explained"))
        driver.save_screenshot(args.out)
    finally:
        driver.quit()
        loop.call_soon_threadsafe(stop.set)
    print(args.out)


if __name__ == "__main__":
    main()
