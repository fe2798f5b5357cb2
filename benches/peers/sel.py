"""Python Selenium's side of the form-entry benchmark (benches/form_entry.rs).

Enters N records into form.html (Name, City, Email, Save; the page shows
`saved <name>`), reading the confirmation back after each one, and prints the
loop time (the browser start is outside it). Debian's chromium and
chromedriver, the same flags as clerk's headless session.

    python3 sel.py 100 [form.html]
"""
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

FLAGS = ("--headless --no-sandbox --disable-gpu --disable-dev-shm-usage "
         "--disable-background-networking --disable-component-update --disable-sync --no-first-run")

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
page = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "form.html")
o = webdriver.ChromeOptions()
for a in FLAGS.split():
    o.add_argument(a)
o.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
d = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=o)
try:
    d.get("file://" + os.path.abspath(page))
    t = time.time()
    for i in range(n):
        d.find_element(By.ID, "n").send_keys(f"Name {i}")
        d.find_element(By.ID, "c").send_keys("Brussels")
        d.find_element(By.ID, "e").send_keys(f"a{i}@x.be")
        d.find_element(By.XPATH, "//button[text()='Save']").click()
        got = d.find_element(By.ID, "out").text
        assert got == f"saved Name {i}", got
    dt = time.time() - t
    print(f"selenium-python: {n} records in {dt:.3f}s = {dt / n * 1000:.1f} ms/record")
finally:
    d.quit()
