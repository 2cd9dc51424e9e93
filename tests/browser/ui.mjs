// Drives the jitgate web UI in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core). Run by tests/it/browser.rs, which starts the server, the OpenID
// provider and the waiting `gate request` processes, and passes what it made in the
// JITGATE_UI_TEST environment variable (JSON). Prints one JSON line per step; exits
// non-zero at the first thing that is not as it should be.
import assert from "node:assert/strict";
import path from "node:path";
import { chromium } from "playwright-core";

const t = JSON.parse(process.env.JITGATE_UI_TEST);
const { base, approveId, denyId, ownId, shots } = t;
const step = (name, extra = {}) => console.log(JSON.stringify({ step: name, ...extra }));

const browser = await chromium.launch({
  executablePath: t.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

// Any Content-Security-Policy violation (an inline script or style slipped in) fails the test.
const violations = [];
function watch(page) {
  page.on("console", (m) => {
    if (/Content.Security.Policy|Refused to (load|execute|apply)/i.test(m.text())) violations.push(m.text());
  });
  page.on("pageerror", (e) => violations.push(String(e)));
  return page;
}

try {
  // ---- alice signs in through the OpenID provider ------------------------------------
  const alice = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = watch(await alice.newPage());
  await page.goto(`${base}/`);
  await page.waitForURL(/\/login\?next=/);
  await page.click("#sso");
  await page.waitForSelector("form[action*='/interaction/']");
  await page.fill("#login", "alice");
  await page.fill("#password", "alice-password");
  await page.click("button[type=submit]");
  await page.waitForSelector("h1:has-text('Waiting for you')");
  assert.equal(new URL(page.url()).pathname, "/");
  step("signed in with sso");

  // The inbox lists the waiting requests, oldest first, with what they still need.
  const links = await page.$$eval(".cards a", (as) => as.map((a) => a.getAttribute("href")));
  assert.deepEqual(links, [`/requests/${approveId}`, `/requests/${denyId}`, `/requests/${ownId}`], "inbox order");
  const card = await page.textContent(".cards li:first-child");
  assert.match(card, /production/);
  assert.match(card, /acme\/web/);
  assert.match(card, /dave-gh/);
  assert.match(card, /sre 0\/1/);
  await page.screenshot({ path: path.join(shots, "inbox.png"), fullPage: true });
  step("inbox");

  // The detail page: context, links, policy, requirements, timeline; approve and deny.
  await page.click(`a[href="/requests/${approveId}"]`);
  await page.waitForSelector("#approve");
  const body = await page.textContent("main");
  for (const want of ["acme/web", "CHG-42", "sha256:", "Matched rule", "production", "created", "Policy digest"]) {
    assert.ok(body.includes(want), `detail shows ${want}`);
  }
  const hrefs = await page.$$eval(".links a", (as) => as.map((a) => a.href));
  assert.ok(hrefs.some((h) => h.endsWith(`/acme/web/commit/${t.commit}`)), `commit link in ${hrefs}`);
  assert.ok(hrefs.some((h) => h.endsWith("/acme/web/pull/7")), `PR link in ${hrefs}`);
  assert.equal(await page.getAttribute("#deny-reason", "required"), "");
  for (const id of ["approve-reason", "deny-reason"]) {
    assert.equal(await page.locator(`label[for=${id}]`).count(), 1, `label for ${id}`);
  }
  await page.screenshot({ path: path.join(shots, "request.png"), fullPage: true });

  // Live update: a second tab with the inbox open drops the request once it is decided,
  // without navigating (the marker set on its window survives).
  const inbox = watch(await alice.newPage());
  await inbox.goto(`${base}/`);
  await inbox.waitForSelector(`a[href="/requests/${approveId}"]`);
  await inbox.evaluate(() => { window.__stillHere = true; });

  await page.fill("#approve-reason", "release checklist done");
  await page.click("#approve");
  await page.waitForSelector("#status:text-matches('approved|consumed')");
  step("approved", { id: approveId });

  await inbox.waitForSelector(`a[href="/requests/${approveId}"]`, { state: "detached" });
  assert.equal(await inbox.evaluate(() => window.__stillHere), true, "inbox updated in place");
  step("inbox updated live");

  // The detail page follows the gate consuming the approval, also without a reload.
  await page.evaluate(() => { window.__stillHere = true; });
  await page.waitForSelector("#status:text('consumed')");
  assert.equal(await page.evaluate(() => window.__stillHere), true, "detail updated in place");
  step("detail updated live");
  const record = await alice.request.get(`${base}/requests/${approveId}/record`);
  assert.equal(record.status(), 200);
  assert.match(await record.text(), /payloadType/);

  // ---- deny: the browser will not send it without a reason; the server refuses one anyway
  await page.goto(`${base}/requests/${denyId}`);
  await page.waitForSelector("#deny");
  await page.click("#deny");
  assert.equal(await page.$eval("#deny-reason", (el) => el.validity.valueMissing), true);
  assert.equal(new URL(page.url()).pathname, `/requests/${denyId}`);
  assert.equal((await page.textContent("#status")).trim(), "pending");
  const csrf = await page.getAttribute("form[action$='/deny'] input[name=csrf]", "value");
  let r = await alice.request.post(`${base}/requests/${denyId}/deny`, { form: { csrf, reason: "  " }, maxRedirects: 0 });
  assert.equal(r.status(), 400, "deny without a reason refused by the server");
  assert.match(await r.text(), /deny needs a reason/);
  step("deny without a reason refused");

  // ---- forms without the anti-forgery token are refused ------------------------------
  r = await alice.request.post(`${base}/requests/${denyId}/deny`, { form: { reason: "forged" }, maxRedirects: 0 });
  assert.equal(r.status(), 403, "no CSRF token");
  r = await alice.request.post(`${base}/requests/${denyId}/deny`, { form: { reason: "forged", csrf: csrf.slice(1) + "A" }, maxRedirects: 0 });
  assert.equal(r.status(), 403, "wrong CSRF token");
  r = await alice.request.post(`${base}/logout`, { form: {}, maxRedirects: 0 });
  assert.equal(r.status(), 403, "logout without CSRF token");
  step("csrf enforced");

  await page.fill("#deny-reason", "not during the freeze");
  await page.click("#deny");
  await page.waitForSelector("#status:text('denied')");
  step("denied", { id: denyId });

  // ---- bob signs in with his token and looks at his own request ----------------------
  const bob = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
  const bp = watch(await bob.newPage());
  await bp.goto(`${base}/requests/${ownId}`);
  await bp.waitForURL(/\/login\?next=/);
  assert.equal(await bp.locator("label[for=token]").count(), 1);
  await bp.fill("#token", t.bobToken);
  await bp.click("form[action='/login'] button[type=submit]");
  await bp.waitForSelector("#no-vote");
  assert.equal(new URL(bp.url()).pathname, `/requests/${ownId}`);
  assert.ok(!bp.url().includes(t.bobToken), "the token never appears in a URL");
  assert.equal(await bp.locator("#approve").count(), 0, "no approve button for the requester");
  assert.equal(await bp.locator("#deny").count(), 0, "no deny button for the requester");
  assert.match(await bp.textContent("#no-vote"), /requester/);
  await bp.screenshot({ path: path.join(shots, "request-phone.png"), fullPage: true });
  const bobCsrf = await bp.getAttribute("form.who input[name=csrf]", "value");
  r = await bob.request.post(`${base}/requests/${ownId}/approve`, { form: { csrf: bobCsrf, reason: "self-approval" }, maxRedirects: 0 });
  assert.equal(r.status(), 403, "forged self-approval refused");
  assert.match(await r.text(), /separation of duties/);
  step("requester cannot approve");

  // Sign out ends the session on the server.
  await bp.click("form.who button[type=submit]");
  await bp.waitForURL(/\/login$/);
  await bp.goto(`${base}/`);
  await bp.waitForURL(/\/login\?next=/);
  step("signed out");

  // ---- someone the config does not know is turned away -------------------------------
  const mallory = await browser.newContext();
  const mp = watch(await mallory.newPage());
  await mp.goto(`${base}/login`);
  await mp.click("#sso");
  await mp.waitForSelector("form[action*='/interaction/']");
  await mp.fill("#login", "mallory");
  await mp.fill("#password", "mallory-password");
  await mp.click("button[type=submit]");
  await mp.waitForSelector("text=matches no user");
  step("unknown person refused");

  assert.deepEqual(violations, [], "no CSP violations or page errors");
  step("done");
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
