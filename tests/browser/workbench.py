"""Drives the triage workbench page in Debian's chromium through chromium-driver (Selenium).

Run by tests/browser.rs (cargo feature test-browser), which starts `triage workbench` and
passes: the page's URL, the `triage eval --json` report of the same labelled file, and the
directory for screenshots. Prints one line per check; exits non-zero on the first failure.
"""
import json
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import UnexpectedAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, eval_path, shots = sys.argv[1], sys.argv[2], sys.argv[3]
expected = json.load(open(eval_path))

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,1100",
          "--disable-dev-shm-usage"]:
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
wait = WebDriverWait(driver, 20)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)


def by(css):
    return driver.find_elements(By.CSS_SELECTOR, css)


def type_into(el, text):
    # Set the value and fire `input`, as typing does (send_keys is slow for long text).
    driver.execute_script(
        "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));",
        el, text)


try:
    driver.get(url)
    wait.until(lambda d: d.find_element(By.ID, "catalogue-name").text.startswith("catalogue "))

    # 1. Paste a ticket: the expected symptom, its highlights and the note appear.
    driver.find_element(By.ID, "subject").send_keys("YubiKey PIN blocked")
    driver.find_element(By.ID, "body").send_keys(
        "Hi, my YubiKey PIN is blocked after too many attempts and I cannot sign in. "
        "The passkey is NOT missing, it is the PIN.")
    driver.find_element(By.ID, "classify").click()
    wait.until(lambda d: by("#symptoms li.symptom"))
    ids = [li.get_attribute("data-id") for li in by("#symptoms li.symptom")]
    check(ids and ids[0] == "pin-locked", f"pasted ticket: pin-locked found first ({ids})")
    marks = by("#text-body mark.mark")
    check(any("PIN is blocked" in m.text for m in marks), "the evidence is highlighted in the body")
    check(all(m.get_attribute("title") for m in marks), "every highlight names its rule on hover")
    check(any("keyword “pin is blocked”" in m.get_attribute("title") for m in marks),
          "a highlight's rule is named in words")
    colours = {c for m in marks for c in m.get_attribute("class").split() if c.startswith("c")}
    check(len(colours) >= 1, f"highlights are coloured per symptom ({colours})")
    notes = {n.get_attribute("data-markup"): n for n in by("#notes .note")}
    check(set(notes) == {"text", "html", "jira", "servicenow"}, f"a note per help-desk markup ({sorted(notes)})")
    src = notes["html"].find_element(By.CSS_SELECTOR, "pre.source").text
    check(src.startswith("<p>Triage note: 1 possible symptom"), "the Zendesk note's HTML source is shown")
    rendered = notes["html"].find_element(By.CSS_SELECTOR, ".rendered")
    check(rendered.find_elements(By.TAG_NAME, "p") and "<p>" not in rendered.text,
          "the Zendesk note is shown rendered")
    check("passkey" in driver.find_element(By.ID, "tags").text, "the tags are shown")
    driver.save_screenshot(f"{shots}/workbench-try.png")

    # A negated phrase is shown as cancelled.
    body = driver.find_element(By.ID, "body")
    body.clear()
    body.send_keys("My security key PIN is not blocked, the key works in Chrome.")
    driver.find_element(By.ID, "classify").click()
    wait.until(lambda d: by("#cancelled li"))
    check(any("negated by “not”" in li.text for li in by("#cancelled li")),
          "a negated phrase is listed as cancelled")
    check(by("#text-body span.cancelled"), "the cancelled words are struck through in the text")

    # 4. A ticket with script in it stays inert.
    driver.find_element(By.ID, "subject").clear()
    driver.find_element(By.ID, "subject").send_keys('<img src=x onerror="window.pwned=1">PIN blocked')
    body.clear()
    body.send_keys('my YubiKey PIN is blocked <script>window.pwned=2</script>'
                   '<img src=x onerror="window.pwned=3"> <b onmouseover="window.pwned=4">bold</b>')
    driver.find_element(By.ID, "classify").click()
    wait.until(lambda d: "<script>" in d.find_element(By.ID, "text-body").text)
    time.sleep(0.5)
    for m in by("#text-body mark, #text-subject mark"):
        driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('mouseover'))", m)
    pwned = driver.execute_script("return window.pwned === undefined ? null : window.pwned")
    check(pwned is None, "no script from the ticket ran")
    check(not by("#text-body script, #text-body img, #text-body b, #notes img, #notes script, #notes b"),
          "the ticket's markup is text, not elements, in the text and the notes")
    check("<script>window.pwned=2</script>" in driver.find_element(By.ID, "text-body").text,
          "the ticket's markup is shown as the text it is")

    # 2. An invalid edit: the error shows with its line.
    driver.find_element(By.ID, "tab-edit").click()
    editor = driver.find_element(By.ID, "editor")
    text = editor.get_attribute("value")
    lines = text.split("\n")
    line = next(i for i, l in enumerate(lines) if l.startswith('id = "pin-locked"')) + 1
    type_into(editor, text.replace('id = "pin-locked"', 'id = "Pin_Locked"', 1))
    wait.until(lambda d: by("#problems li"))
    p = by("#problems li")[0]
    check(p.get_attribute("data-line") == str(line) and f":{line}: symptom `Pin_Locked`: field `id`" in p.text,
          f"the invalid edit's problem names line {line}: {p.text}")
    check("problem" in driver.find_element(By.ID, "edit-status").text, "the status says the edit has problems")
    check("+id = \"Pin_Locked\"" in driver.find_element(By.ID, "diff").text, "the change is offered as a diff")
    driver.find_element(By.ID, "browse-search").send_keys("pin")
    driver.save_screenshot(f"{shots}/workbench-edit.png")
    # Back to the saved catalogue.
    driver.find_element(By.ID, "revert").click()
    wait.until(lambda d: not by("#problems li"))
    check("Same as the files" in driver.find_element(By.ID, "edit-status").text, "revert restores the saved catalogue")

    # 3. The measure view's numbers equal `triage eval --json` on the same file.
    driver.find_element(By.ID, "tab-measure").click()
    wait.until(lambda d: by("#measure-table tbody tr"))
    def num(css):
        return float(driver.find_element(By.CSS_SELECTOR, css).get_attribute("data-value"))
    check(int(num("#m-tickets")) == expected["tickets"], "measure: ticket count equals eval")
    check(abs(num("#m-macro") - expected["macro_f1"]) < 1e-12, "measure: macro F1 equals eval")
    check(abs(num("#m-micro") - expected["micro_f1"]) < 1e-12, "measure: micro F1 equals eval")
    check(abs(num("#m-fp") - expected["false_positive_rate"]) < 1e-12, "measure: false-positive rate equals eval")
    shown_macro = driver.find_element(By.ID, "m-macro").text
    check(shown_macro == f"{expected['macro_f1']:.3f}", f"measure: macro F1 shown as {shown_macro}")
    rows = {r.get_attribute("data-id"): r for r in by("#measure-table tbody tr")}
    check(set(rows) == {s["id"] for s in expected["symptoms"]}, "measure: a row per symptom")
    for s in expected["symptoms"]:
        r = rows[s["id"]]
        for key, field in [("support", "support"), ("tp", "tp"), ("fp", "fp"), ("fn", "fn_"),
                           ("precision", "precision"), ("recall", "recall"), ("f1", "f1")]:
            cell = r.find_element(By.CSS_SELECTOR, f'td[data-key="{key}"]')
            v = float(cell.get_attribute("data-value"))
            if abs(v - s[field]) > 1e-12:
                raise AssertionError(f"measure: {s['id']} {key} {v} != eval {s[field]}")
    check(True, "measure: every symptom's support, tp, fp, fn, precision, recall and F1 equal eval")
    misses = [r.get_attribute("data-id") for r in by("#misses tbody tr")]
    check(misses == [m["id"] for m in expected["misclassified"]], "measure: every miss and false positive is listed")
    driver.find_element(By.ID, "suggest").click()
    wait.until(lambda d: by("#suggestions .suggestion") or "No phrase" in d.find_element(By.ID, "suggestions").text)
    check(by("#suggestions .suggestion pre"), "the measure view offers suggestions as TOML lines")
    # A miss is one click from the try view.
    first = misses[0]
    driver.find_element(By.CSS_SELECTOR, f'#misses tr[data-id="{first}"] button').click()
    wait.until(lambda d: d.find_element(By.ID, "try-id").text == f"({first})")
    check(not driver.find_element(By.ID, "view-try").get_attribute("hidden"), f"a miss ({first}) opens in the try view")
    check("labelled" in driver.find_element(By.ID, "labels-line").text, "the try view shows its labels")

    # After an edit, before it is saved: +/- per symptom, and the tickets it fixes and breaks.
    driver.find_element(By.ID, "tab-edit").click()
    editor = driver.find_element(By.ID, "editor")
    text = editor.get_attribute("value")
    at = text.index('id = "pin-locked"')
    type_into(editor, text[:at] + "threshold = 4.0\n" + text[at:])
    wait.until(lambda d: "What this edit changes" in d.find_element(By.ID, "edit-effect").text)
    check("breaks" in driver.find_element(By.ID, "edit-effect").text, "the edit view says what the edit fixes and breaks")
    driver.find_element(By.ID, "tab-measure").click()
    wait.until(lambda d: by("#breaks button"))
    pin = driver.find_element(By.CSS_SELECTOR, '#measure-table tr[data-id="pin-locked"]')
    check(pin.find_elements(By.CSS_SELECTOR, ".minus"), "the measure view shows the edit's F1 change per symptom")
    check(by("#breaks button"), "the measure view lists the tickets the edit breaks")
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(f"{shots}/workbench-measure.png")
    print("browser: all checks passed", flush=True)
except UnexpectedAlertPresentException as e:
    print("FAILED: a script from the ticket opened an alert:", e, flush=True)
    sys.exit(1)
except Exception as e:
    try:
        driver.save_screenshot(f"{shots}/failure.png")
    except Exception:
        pass
    print("FAILED:", e, flush=True)
    sys.exit(1)
finally:
    driver.quit()
