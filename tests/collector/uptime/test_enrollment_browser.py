"""The enrollment page in real headless Chromium against a served collector, with a test
wallet injected as a browser wallet injects itself: ``window.ethereum`` (EIP-1193) or
Freighter's ``window.freighterApi``, whose signing calls back into Python, where a
``tests.factories.Wallet`` signs for real. One click enrolls the agent's key; another account
or another key enrolls nothing and the page says why. Screenshots are left in ``artifacts/``.

SQLite only, as the dashboard's browser test: test_enrollment_page.py runs the page on both
databases."""

import base64
import json

import httpx
import pytest
from playwright.sync_api import Page, expect

from protocol.wallets import to_checksum_address
from tests.chromium import ARTIFACTS, watched
from tests.conftest import ServedCollector
from tests.factories import FakeWorker, Wallet

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"])]

ENROLLED = (
    "Enrolled: this machine now earns uptime for {wallet}. You can close this page; the "
    "install goes on by itself."
)
# As MetaMask injects itself: a provider whose request() answers the page's two calls.
ETHEREUM = """
window.ethereum = {
  isMetaMask: true,
  request: function (args) {
    if (args.method === "eth_requestAccounts") return Promise.resolve([%(account)s]);
    if (args.method === "personal_sign") {
      return window.testWalletSign(args.params[0], args.params[1]);
    }
    return Promise.reject({code: 4200, message: "unsupported method " + args.method});
  }
};
"""
# The freighter-api global (v4+): signMessage(message, {address}) -> {signedMessage, signerAddress}.
FREIGHTER = """
window.freighterApi = {
  signMessage: function (message, opts) {
    return window.testWalletSign(message, opts.address).then(function (signed) {
      return {signedMessage: signed, signerAddress: opts.address};
    });
  }
};
"""
# The Freighter extension itself, as its content script answers a page's window messages
# (what the freighter-api library sends): connected, this site not yet allowed, access
# granted, then SUBMIT_BLOB signed, the signature in base64 for an apiVersion of 4 or later.
FREIGHTER_EXTENSION = """
window.addEventListener("message", function (event) {
  var request = event.data;
  if (event.source !== window || !request || request.source !== "FREIGHTER_EXTERNAL_MSG_REQUEST") {
    return;
  }
  function answer(fields) {
    fields.source = "FREIGHTER_EXTERNAL_MSG_RESPONSE";
    fields.messagedId = request.messageId;
    window.postMessage(fields, window.location.origin);
  }
  if (request.type === "REQUEST_CONNECTION_STATUS") answer({isConnected: true});
  else if (request.type === "REQUEST_ALLOWED_STATUS") answer({isAllowed: false});
  else if (request.type === "REQUEST_ACCESS") answer({publicKey: %(account)s});
  else if (request.type === "SUBMIT_BLOB") {
    window.testWalletSign(request.blob, request.accountToSign, request.apiVersion).then(
      function (signed) { answer({signedBlob: signed, signerAddress: request.accountToSign}); }
    );
  }
});
"""


def challenge_for(url: str, worker: FakeWorker) -> dict:
    """Ask for a challenge over HTTP, as the agent does at the end of the install."""
    answer = worker.challenge_at(url)
    assert answer.status_code == 201
    return answer.json()


def ethereum(page: Page, signer: Wallet, account: str) -> list[tuple[str, str]]:
    """Inject an EVM browser wallet that offers ``account`` and signs with ``signer``; return
    the (message, address) of every signature it is asked for."""
    asked: list[tuple[str, str]] = []

    def sign(hex_message: str, address: str) -> str:
        asked.append((bytes.fromhex(hex_message.removeprefix("0x")).decode("utf-8"), address))
        return signer.sign(asked[-1][0])

    page.expose_function("testWalletSign", sign)
    page.add_init_script(ETHEREUM % {"account": json.dumps(account)})
    return asked


def freighter(page: Page, signer: Wallet, shape: str) -> list[tuple[str, str]]:
    """Inject Freighter signing with ``signer``, its signature a base64 string or, as older
    Freighter answers it, a Buffer's JSON (``{type: "Buffer", data: [...]}``)."""
    asked: list[tuple[str, str]] = []

    def sign(message: str, address: str):
        asked.append((message, address))
        signature = signer.sign(message)
        if shape == "string":
            return signature
        return {"type": "Buffer", "data": list(base64.b64decode(signature))}

    page.expose_function("testWalletSign", sign)
    page.add_init_script(FREIGHTER)
    return asked


def freighter_extension(page: Page, signer: Wallet) -> list[tuple[str, str, str]]:
    """Install a stand-in for the Freighter extension's content script, signing with
    ``signer``; return the (message, address, apiVersion) of every signature asked for."""
    asked: list[tuple[str, str, str]] = []

    def sign(message: str, address: str, version: str) -> str:
        asked.append((message, address, version))
        return signer.sign(message)

    page.expose_function("testWalletSign", sign)
    page.add_init_script(FREIGHTER_EXTENSION % {"account": json.dumps(signer.address)})
    return asked


def desktop_page(browser) -> tuple[Page, list[str]]:
    """A page of a desktop-sized window, and the console errors it will collect."""
    page = browser.new_page(viewport={"width": 1024, "height": 800})
    return page, watched(page)


def enrolled_key(url: str, wallet: str) -> str | None:
    answer = httpx.get(f"{url}/workers/{wallet}", headers=ServedCollector.operator)
    return answer.json()["publicKey"] if answer.status_code == 200 else None


def fits(page: Page) -> None:
    # Against the phone's width, not innerWidth: a mobile browser zooms out to show what
    # overflows, which widens innerWidth with it.
    overflow = page.evaluate("document.documentElement.scrollWidth") - page.viewport_size["width"]
    assert overflow <= 0, f"the page is {overflow} px wider than the phone"


def test_the_owner_enrolls_the_machine_with_one_click_on_a_phone(serve_collector, browser):
    served = serve_collector()
    worker = FakeWorker()
    challenge = challenge_for(served.url, worker)
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    problems = watched(page)
    # Wallets spell the account as they like (EIP-55 here); the page compares without case.
    account = to_checksum_address(worker.wallet)
    asked = ethereum(page, worker.owner, account)
    page.goto(challenge["signUrl"])
    expect(page.locator("#wallet")).to_have_text(worker.wallet)
    expect(page.locator("#key")).to_have_text(worker.public_key)
    expect(page.locator("#message")).to_have_text(challenge["message"])
    fits(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "enroll-phone.png", full_page=True)

    page.get_by_role("button", name="Sign with your wallet").tap()
    expect(page.locator("#outcome")).to_have_text(ENROLLED.format(wallet=worker.wallet))
    expect(page.get_by_role("button")).to_be_hidden()
    assert asked == [(challenge["message"], account)]
    assert enrolled_key(served.url, worker.wallet) == worker.public_key
    # What the waiting agent polls for.
    status = httpx.get(f"{served.url}/workers/enroll/challenge/{challenge['challengeId']}")
    assert status.json()["status"] == "used"
    fits(page)
    page.screenshot(path=ARTIFACTS / "enroll-phone-enrolled.png", full_page=True)

    # Opened again, the link says it was used, and offers nothing to press.
    page.reload()
    expect(page.locator("#state")).to_contain_text("This link was used")
    expect(page.get_by_role("button")).to_have_count(0)
    assert problems == []
    context.close()


def test_a_wallet_on_another_account_is_told_which_account_to_switch_to(serve_collector, browser):
    served = serve_collector()
    worker = FakeWorker()
    challenge = challenge_for(served.url, worker)
    other = Wallet()
    page, problems = desktop_page(browser)
    asked = ethereum(page, other, other.address)
    page.goto(challenge["signUrl"])
    page.get_by_role("button", name="Sign with your wallet").click()
    outcome = page.locator("#outcome")
    expect(outcome).to_contain_text(f"Your wallet offers the account {other.address}")
    expect(outcome).to_contain_text(f"enrolled for {worker.wallet}. Switch to that account")
    # Nothing was signed, nothing enrolled; the button stays for the next try.
    expect(page.get_by_role("button", name="Sign with your wallet")).to_be_enabled()
    assert asked == []
    assert enrolled_key(served.url, worker.wallet) is None
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "enroll-switch-account.png", full_page=True)
    assert problems == []
    page.close()


def test_a_signature_by_another_key_is_refused_by_the_collector_and_shown(serve_collector, browser):
    served = serve_collector()
    worker = FakeWorker()
    challenge = challenge_for(served.url, worker)
    page, problems = desktop_page(browser)
    # A wallet that claims the owner's account but signs with another key.
    asked = ethereum(page, Wallet(), worker.wallet)
    page.goto(challenge["signUrl"])
    page.get_by_role("button", name="Sign with your wallet").click()
    expect(page.locator("#outcome")).to_have_text(
        f"The collector refused: signature is not by wallet {worker.wallet} over this message."
    )
    expect(page.get_by_role("button", name="Sign with your wallet")).to_be_enabled()
    assert len(asked) == 1
    assert enrolled_key(served.url, worker.wallet) is None
    status = httpx.get(f"{served.url}/workers/enroll/challenge/{challenge['challengeId']}")
    assert status.json()["status"] == "pending"
    # The collector's 401 for the signature is the page's only failed request, and the page
    # reports it itself: Chromium logs that failed request as a console error.
    assert problems == [
        "Failed to load resource: the server responded with a status of 401 (UNAUTHORIZED)"
    ]
    page.close()


def test_a_browser_without_a_wallet_is_told_what_it_needs(serve_collector, browser):
    served = serve_collector()
    worker = FakeWorker()
    challenge = challenge_for(served.url, worker)
    page, problems = desktop_page(browser)
    page.goto(challenge["signUrl"])
    page.get_by_role("button", name="Sign with your wallet").click()
    outcome = page.locator("#outcome")
    expect(outcome).to_contain_text(
        "Signing here needs a browser wallet (MetaMask or any other EIP-1193 wallet)"
    )
    expect(outcome).to_contain_text("paste the signature into tassium-agent enroll")
    assert enrolled_key(served.url, worker.wallet) is None
    assert problems == []
    page.close()


@pytest.mark.parametrize("shape", ["string", "buffer"])
def test_a_stellar_owner_enrolls_with_freighter(serve_collector, browser, shape):
    served = serve_collector(wallet_format="stellar")
    worker = FakeWorker.stellar()
    challenge = challenge_for(served.url, worker)
    page, problems = desktop_page(browser)
    asked = freighter(page, worker.owner, shape)
    page.goto(challenge["signUrl"])
    expect(page.locator("#wallet")).to_have_text(worker.wallet)
    page.get_by_role("button", name="Sign with your wallet").click()
    expect(page.locator("#outcome")).to_have_text(ENROLLED.format(wallet=worker.wallet))
    assert asked == [(challenge["message"], worker.wallet)]
    assert enrolled_key(served.url, worker.wallet) == worker.public_key
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"enroll-stellar-{shape}.png", full_page=True)
    assert problems == []
    page.close()


def test_a_stellar_owner_enrolls_with_the_freighter_extension_itself(serve_collector, browser):
    """No freighter-api script on the page: it speaks the extension's window messages."""
    served = serve_collector(wallet_format="stellar")
    worker = FakeWorker.stellar()
    challenge = challenge_for(served.url, worker)
    page, problems = desktop_page(browser)
    asked = freighter_extension(page, worker.owner)
    page.goto(challenge["signUrl"])
    page.get_by_role("button", name="Sign with your wallet").click()
    expect(page.locator("#outcome")).to_have_text(ENROLLED.format(wallet=worker.wallet))
    assert asked == [(challenge["message"], worker.wallet, "5.0.0")]
    assert enrolled_key(served.url, worker.wallet) == worker.public_key
    assert problems == []
    page.close()
