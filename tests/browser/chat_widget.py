"""The web chat widget in Debian's Chromium (Playwright), against a running switchboard.

Run by scripts/browser-test, which starts the server inside a private network namespace and
passes BASE (the server), KEY (a control API key), and EMBED_PORT (a port on 127.0.0.1 for a
page of another origin that embeds /widget.js; that origin is in [chat] widget_origins).

A customer opens /chat, gives name and phone, and sends messages; a reply sent through the
API appears in the page; the WebSocket is dropped while a reply is written and the page sends
a message, and after it reconnects nothing is lost or shown twice; a reload keeps the
conversation; a card number typed in the page is masked in the page and in the API; every
control is found by its role and accessible name; the widget opens from another site.
"""

import http.server
import json
import os
import re
import sys
import threading
import time
import urllib.request

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["BASE"]
KEY = os.environ["KEY"]
EMBED_PORT = int(os.environ["EMBED_PORT"])
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 10_000


def api(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        BASE + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
        return r.status, (json.loads(text) if text else None)


def wait_for(what, fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def web_conversation():
    _, page = api("GET", "/v1/conversations?channel=web&state=open")
    return page["items"][0] if page["items"] else None


def messages(conversation_id):
    _, conv = api("GET", f"/v1/conversations/{conversation_id}")
    return conv["messages"]


def serve_embedding_page():
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Shop</title></head>"
        f"<body><h1>Shop</h1><script src='{BASE}/widget.js' async></script></body></html>"
    ).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", EMBED_PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    embed = serve_embedding_page()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.goto(BASE + "/chat")

        # The pre-chat form: every control has a visible label.
        page.get_by_label("Name").fill("Ada Lovelace")
        page.get_by_label("Phone").fill("+44 20 7946 0000")
        page.get_by_role("button", name="Start chat").click()

        log = page.get_by_role("log", name="Messages")
        box = page.get_by_role("textbox", name="Message")
        send = page.get_by_role("button", name="Send")
        box.fill("Hello, my parcel is late")
        send.click()
        expect(log.get_by_text("Hello, my parcel is late")).to_be_visible()
        expect(log.get_by_text("Sent")).to_be_visible()

        conv = wait_for("the web conversation", web_conversation)
        cid = conv["id"]
        _, found = api("GET", "/v1/customers?phone=%2B442079460000")
        assert found["items"] and found["items"][0]["id"] == conv["customer_id"], found

        # A reply through the API appears; the page marks it read.
        status, reply = api("POST", f"/v1/conversations/{cid}/messages", {"text": "Hi Ada, let me check.", "author": "Grace"})
        assert status == 201
        expect(log.get_by_text("Hi Ada, let me check.")).to_be_visible()
        expect(log.get_by_text("Grace")).to_be_visible()
        wait_for("the reply read", lambda: messages(cid)[1]["read_ms"])
        # The agent types, then reads the customer's message.
        api("POST", f"/v1/conversations/{cid}/typing")
        expect(page.get_by_text(re.compile("is typing"))).to_be_visible()
        first_id = messages(cid)[0]["id"]
        api("POST", f"/v1/conversations/{cid}/read", {"message_id": first_id})
        expect(log.get_by_text("Read")).to_be_visible()

        # The connection drops: offline, the socket closed. A reply is written meanwhile and
        # the customer sends a message; back online, both arrive once.
        context.set_offline(True)
        page.evaluate("() => { const s = window.switchboardChat.socket(); s.__old = true; s.close(); }")
        expect(page.get_by_role("status")).to_contain_text("Reconnecting")
        api("POST", f"/v1/conversations/{cid}/messages", {"text": "While you were away", "author": "Grace"})
        box.fill("Typed while offline")
        send.click()
        context.set_offline(False)
        expect(log.get_by_text("While you were away")).to_have_count(1)
        expect(log.get_by_text("Typed while offline")).to_be_visible()
        wait_for("the offline message stored", lambda: any(m["text"] == "Typed while offline" for m in messages(cid)))
        assert page.evaluate("() => !window.switchboardChat.socket().__old"), "a new socket"
        time.sleep(0.5)  # let any duplicate that would come, come
        expect(log.get_by_text("Typed while offline")).to_have_count(1)
        expect(log.get_by_text("While you were away")).to_have_count(1)
        stored = [m["text"] for m in messages(cid)]
        assert stored.count("Typed while offline") == 1, stored

        # A card number is masked, in the page and in the API.
        box.fill("My card is 4111 1111 1111 1111")
        send.click()
        expect(log.get_by_text("My card is •••• 1111")).to_be_visible()
        wait_for("the card message stored", lambda: any("•••• 1111" in m["text"] for m in messages(cid)))
        _, whole = api("GET", f"/v1/conversations/{cid}")
        assert "4111 1111" not in json.dumps(whole), whole

        # An attachment: an image goes through, shows in the page, and is in the API.
        png = os.path.join(os.environ.get("TMPDIR", "/tmp"), "switchboard-test.png")
        with open(png, "wb") as f:
            f.write(bytes.fromhex(
                "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                "1f15c4890000000d49444154789c6360f8cfc0f01f0005fe02fea7d6a9"
                "a40000000049454e44ae426082"))
        page.get_by_label(re.compile("Attach a file")).set_input_files(png)
        box.fill("Here is a photo")
        send.click()
        expect(log.get_by_role("img", name="switchboard-test.png")).to_be_visible()
        with_file = wait_for(
            "the photo stored",
            lambda: [m for m in messages(cid) if m["attachments"]],
        )
        assert with_file[0]["attachments"][0]["content_type"] == "image/png", with_file
        loaded = page.evaluate(
            "() => [...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0)"
        )
        assert loaded, "the image loads from the server"

        # A reload keeps the conversation: no form, the same messages, each once.
        page.reload()
        expect(page.get_by_role("button", name="Start chat")).to_be_hidden()
        expect(log.locator("li")).to_have_count(len(messages(cid)))
        expect(log.get_by_text("Hello, my parcel is late")).to_have_count(1)

        # Every control on the page has an accessible name.
        unnamed = page.evaluate(
            """() => [...document.querySelectorAll('button, input, textarea, select')]
                 .filter(e => e.offsetParent !== null)
                 .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                              && !(e.textContent || '').trim())
                 .map(e => e.outerHTML)"""
        )
        assert not unnamed, unnamed

        # The widget on another allowed origin opens the chat in a frame. (Here both origins
        # are the site 127.0.0.1, so the frame shares the page's storage and shows the same
        # conversation; on another site it would be a new visitor.)
        shop = context.new_page()
        shop.goto(f"http://127.0.0.1:{EMBED_PORT}/")
        shop.get_by_role("button", name="Chat with us").click()
        frame = shop.frame_locator("iframe[title='Chat with us']")
        expect(frame.get_by_role("log", name="Messages").get_by_text("Hello, my parcel is late")).to_be_visible()
        frame.get_by_role("textbox", name="Message").fill("Hello from the shop")
        frame.get_by_role("button", name="Send").click()
        sent = frame.get_by_role("log", name="Messages").locator("li", has_text="Hello from the shop")
        expect(sent).to_contain_text(re.compile("Sent|Read"))
        wait_for(
            "the shop visitor's message",
            lambda: any(
                m["text"] == "Hello from the shop"
                for c in api("GET", "/v1/conversations?channel=web")[1]["items"]
                for m in messages(c["id"])
            ),
        )
        browser.close()
    embed.shutdown()
    print("chat widget: PASS")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report and fail
        print(f"chat widget: FAIL: {e}", file=sys.stderr)
        raise
