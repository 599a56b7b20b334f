// tests/browser/e2e.mjs: end-to-end test of the web app (www/) in a real Chromium against
// the real stack (lighttpd + gateway + Redis), driven only through the hooks of the
// www/ <-> browser-test contract (ids, data-testid, hidden/disabled/aria attributes).
//
//   node tests/browser/e2e.mjs BASE_URL OUT_DIR
//
// tests/integration/70-browser.sh starts the stack and runs this. Output is TAP-like and
// plan-free ("ok N - desc" / "not ok N - desc", "#" diagnostics); the exit status is 1
// when a check failed. Screenshots of the main screens go to OUT_DIR/screenshots/, and on
// a failure a screenshot of the page as it was (fail-N-<flow>.png) with the page URL, the
// #message text and the console errors as diagnostics.
//
// Flows, in this order (only the anonymous one spends ai_anonymous tokens):
//   1. preflight: / , /app.js and /app.css are the files of www/;
//   2. desktop (1280x900), signed-up user: sign up, log out, log in by keyboard only,
//      start a story, continue it with free text (keyboard) and with a suggestion, end
//      it, find it in the list, open it, delete it; a 51-character genre gives a readable
//      422; 25 stories page through #more-stories; a refused token (401) logs out with a
//      message; #rate follows the RateLimit headers throughout; every request goes to
//      the page's own origin;
//   3. desktop, anonymous: start stories until a 429, the countdown runs down and the
//      buttons come back, then a new start works;
//   4. phone (375x812, isMobile): log in, start a story, read it, no horizontal scroll.
// The script expects the tiers 70-browser.sh gives the stack: ai_anonymous burst 2 (and a
// refill slow enough for a countdown of several seconds).
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const [BASE_ARG, OUT_ARG] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The www/ the stack serves: $SG_ROOT/www (lib.sh's start_stack exports SG_ROOT), else
// the repository's.
const WWW = join(process.env.SG_ROOT || resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'www');
const STEP_TIMEOUT = 10000; // ms for one wait in the page (the offline storyteller is fast)

// ------------------------------------------------------------------------- reporting

let checkN = 0;
let failures = 0;
let current = null; // { name, page, consoleErrors } of the flow that runs now

function diag(line) {
    // eslint-disable-next-line no-control-regex
    for (const l of String(line).replace(/\x1b\[[0-9;]*m/g, '').split('\n')) console.log(`#   ${l}`);
}

function pass(desc) {
    checkN += 1;
    console.log(`ok ${checkN} - ${desc}`);
}

// fail DESC [DIAGS]: "not ok", the given diagnostics, then the state of the current page
// (URL, #message, console errors) and a screenshot of it.
async function fail(desc, diags = []) {
    checkN += 1;
    failures += 1;
    console.log(`not ok ${checkN} - ${desc}`);
    diags.forEach(diag);
    if (!current || !current.page || current.page.isClosed()) return;
    const { page, name, consoleErrors } = current;
    diag(`page: ${page.url()} (flow ${name})`);
    const message = await page.locator('#message').textContent({ timeout: 1000 }).catch(() => null);
    diag(`#message: ${message === null ? '(none)' : JSON.stringify(message.trim())}`);
    if (consoleErrors.length) consoleErrors.forEach((e) => diag(`console error: ${e}`));
    else diag('console errors: none');
    const shot = join(OUT, 'screenshots', `fail-${checkN}-${name}.png`);
    try {
        await page.screenshot({ path: shot, fullPage: true, timeout: 5000 });
        diag(`screenshot: ${shot}`);
    } catch (e) {
        diag(`screenshot failed: ${e.message.split('\n')[0]}`);
    }
}

async function check(desc, cond, diags = []) {
    if (cond) pass(desc);
    else await fail(desc, typeof diags === 'function' ? diags() : diags);
    return Boolean(cond);
}

function checkEq(desc, expected, got) {
    return check(desc, expected === got, [`expected: ${JSON.stringify(expected)}`,
        `got:      ${JSON.stringify(got)}`]);
}

// checkText DESC PAGE SEL EXPECTED: the element's text (whitespace squashed) becomes
// EXPECTED within the step timeout (the app may fill it after a second request).
async function checkText(desc, page, sel, expected) {
    let got = null;
    const same = await until(async () => {
        got = squash(await page.locator(sel).first().textContent({ timeout: 500 }));
        return got === expected;
    });
    return check(desc, same, [`expected: ${JSON.stringify(expected)}`, `got:      ${JSON.stringify(got)}`]);
}

// A step that cannot go on (a wait timed out, an element is missing) throws; the flow
// stops there with one "not ok" naming the step.
class StepError extends Error {}
function need(cond, what) {
    if (!cond) throw new StepError(what);
}

// ------------------------------------------------------------------------ page helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// until FN [TIMEOUT]: poll FN (sync or async) until it returns a truthy value; return it,
// or false after TIMEOUT ms. Exceptions count as "not yet".
async function until(fn, timeout = STEP_TIMEOUT, interval = 50) {
    const end = Date.now() + timeout;
    for (;;) {
        try {
            const v = await fn();
            if (v) return v;
        } catch {
            // not there yet
        }
        if (Date.now() > end) return false;
        await sleep(interval);
    }
}

const squash = (s) => String(s ?? '').replace(/\s+/g, ' ').trim();

// Shown on screen: rendered with a box (Playwright's isVisible). [hidden] hides through
// the browser's own stylesheet; a CSS rule that overrides it (display: flex on the id)
// shows the element again, and then it counts as shown, as the user sees it.
async function shown(page, sel) {
    return page.locator(sel).first().isVisible();
}

// Gone for the user: not rendered, or rendered but disabled.
async function goneOrDisabled(page, sel) {
    const loc = page.locator(sel);
    if ((await loc.count()) === 0) return true;
    if (!(await loc.first().isVisible())) return true;
    return loc.first().isDisabled();
}

async function text(page, sel) {
    return squash(await page.locator(sel).first().textContent({ timeout: STEP_TIMEOUT }));
}

async function attr(page, sel, name) {
    return page.locator(sel).first().getAttribute(name, { timeout: STEP_TIMEOUT });
}

// act PAGE METHOD PATH_PREFIX ACTION: run ACTION (clicks, keys) and wait for the response
// to METHOD PATH_PREFIX... that it causes; return that Response.
async function act(page, method, pathPrefix, action, timeout = STEP_TIMEOUT) {
    const waiting = page.waitForResponse((r) => r.request().method() === method &&
        new URL(r.url()).pathname.startsWith(pathPrefix), { timeout }).catch(() => null);
    await action();
    const resp = await waiting;
    need(resp, `an answer to ${method} ${pathPrefix} within ${timeout / 1000} s of the action (was it sent?)`);
    return resp;
}

async function jsonOf(resp) {
    try {
        return await resp.json();
    } catch {
        return null;
    }
}

// tabTo PAGE ID: press Tab until the element with that id has the focus (keyboard only).
async function tabTo(page, id, max = 40) {
    for (let i = 0; i < max; i++) {
        await page.keyboard.press('Tab');
        if ((await page.evaluate(() => document.activeElement && document.activeElement.id)) === id) {
            return true;
        }
    }
    return false;
}

// shot PAGE NAME [FULL]: OUT/screenshots/NAME.png, the whole page, or with FULL false
// the viewport as the user sees it (sticky notices stay where they are drawn).
async function shot(page, name, full = true) {
    await page.screenshot({ path: join(OUT, 'screenshots', `${name}.png`), fullPage: full });
}

// The page's horizontal overflow: documentElement.scrollWidth - innerWidth (> 0 scrolls).
async function overflowX(page) {
    return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}

async function isBusy(page) {
    return page.evaluate(() => ['#story', 'body'].some((s) => {
        const el = document.querySelector(s);
        return el && el.getAttribute('aria-busy') === 'true';
    }));
}

// ------------------------------------------------------------------ per-page recorder

// watch PAGE NAME EXPECTED_STATUSES: record the page's console errors, page errors, API
// responses (those with RateLimit headers, in arrival order), requests in flight and
// every request URL. Chromium logs "Failed to load resource: ... status of 4xx" for each
// failed fetch; those of the statuses a flow provokes on purpose are not errors.
function watch(page, name, expectedStatuses = []) {
    const rec = { name, page, consoleErrors: [], rated: [], requests: [], inflight: 0 };
    const expected = new RegExp(
        `^Failed to load resource: the server responded with a status of (${expectedStatuses.join('|') || 'none'})\\b`);
    page.on('console', (m) => {
        if (m.type() !== 'error' || expected.test(m.text())) return;
        const where = m.location() && m.location().url ? ` (${m.location().url})` : '';
        rec.consoleErrors.push(`${m.text()}${where}`);
    });
    page.on('pageerror', (e) => rec.consoleErrors.push(`pageerror: ${e.message}`));
    page.on('request', (r) => {
        rec.inflight += 1;
        rec.requests.push(r);
    });
    const done = () => { rec.inflight -= 1; };
    page.on('requestfinished', done);
    page.on('requestfailed', done);
    page.on('response', (r) => {
        const h = r.headers();
        const byApp = ['fetch', 'xhr'].includes(r.request().resourceType());
        if (byApp && h['ratelimit-limit'] !== undefined) rec.rated.push({ url: r.url(), status: r.status(), h });
    });
    page.setDefaultTimeout(STEP_TIMEOUT);
    return rec;
}

// quiet REC: wait until no request has been in flight for 300 ms (5 s at most).
async function quiet(rec) {
    let calmSince = Date.now();
    const end = Date.now() + 5000;
    while (Date.now() < end) {
        if (rec.inflight > 0) calmSince = Date.now();
        else if (Date.now() - calmSince >= 300) return true;
        await sleep(50);
    }
    return false;
}

// checkRate REC WHEN: #rate shows the RateLimit-Remaining / -Limit and the tier (from
// RateLimit-Policy) of the last API answer that carried them.
async function checkRate(rec, when) {
    const { page } = rec;
    await quiet(rec);
    const last = rec.rated[rec.rated.length - 1];
    if (!last) {
        await fail(`#rate ${when}: an API answer with RateLimit headers was seen`);
        return;
    }
    const want = {
        remaining: last.h['ratelimit-remaining'],
        limit: last.h['ratelimit-limit'],
        tier: ((last.h['ratelimit-policy'] || '').match(/^\s*"([^"]+)"/) || [])[1] || null,
    };
    let got = null;
    const same = await until(async () => {
        got = await page.evaluate(() => {
            const el = document.querySelector('#rate');
            return el && { remaining: el.getAttribute('data-remaining'), limit: el.getAttribute('data-limit'),
                tier: el.getAttribute('data-tier'), text: el.textContent.replace(/\s+/g, ' ').trim() };
        });
        return got && got.remaining === want.remaining && got.limit === want.limit && got.tier === want.tier &&
            got.text.includes(`${want.remaining} of ${want.limit}`);
    }, 3000);
    const path = new URL(last.url).pathname;
    await check(`#rate ${when}: "N of M" and data-remaining / data-limit / data-tier as the last answer's ` +
        'RateLimit headers say', same, () => [`last answer: ${path} ${last.status}`,
        `RateLimit-Remaining ${want.remaining}, RateLimit-Limit ${want.limit}, policy ${last.h['ratelimit-policy']}`,
        `#rate: ${JSON.stringify(got)}`]);
}

async function checkNoConsoleErrors(rec) {
    await check(`${rec.name}: no console errors or uncaught exceptions`, rec.consoleErrors.length === 0,
        rec.consoleErrors.map((e) => `console: ${e}`));
}

// A readable message: a sentence, not raw JSON.
function readable(msg) {
    return msg.length > 0 && /[a-z]{2,}/i.test(msg) && !msg.includes('{"') && !msg.includes('"detail"') &&
        !msg.includes('[{') && !/\[object /.test(msg);
}

// ----------------------------------------------------------------------------- flows

async function fillStoryForm(page, genre, characters, opening) {
    await page.fill('#genre', genre);
    await page.fill('#characters', characters);
    await page.fill('#opening-line', opening);
}

const PARTS = '#story-parts [data-testid="part"]';

// checkPart PAGE N PART [USER_INPUT]: the N-th part element shows the API's part.
async function checkPart(page, n, part, label) {
    const el = page.locator(PARTS).nth(n - 1);
    const kind = await el.getAttribute('data-kind');
    const dn = await el.getAttribute('data-n');
    const body = squash(await el.textContent());
    await check(`${label}: part ${n} is data-kind=${part.kind} data-n=${part.n}`,
        kind === part.kind && dn === String(part.n), [`got data-kind=${kind} data-n=${dn}`]);
    await check(`${label}: part ${n} shows the text the API wrote`, body.includes(squash(part.text)),
        [`API text: ${squash(part.text).slice(0, 200)}`, `element:  ${body.slice(0, 300)}`]);
    if (part.user_input !== null && part.user_input !== undefined) {
        await check(`${label}: part ${n} shows its user_input`, body.includes(squash(part.user_input)),
            [`user_input: ${part.user_input}`, `element:    ${body.slice(0, 300)}`]);
    }
}

async function preflight(base) {
    const index = await fetch(`${base}/`);
    const served = await index.text();
    const file = readFileSync(join(WWW, 'index.html'), 'utf8');
    await check('GET / serves www/index.html (the stack\'s document root)', index.status === 200 && served === file,
        [`status ${index.status}, ${served.length} bytes served, www/index.html has ${file.length}`]);
    for (const [path, type] of [['/app.js', /^text\/javascript\b|^application\/javascript\b/],
        ['/app.css', /^text\/css\b/]]) {
        const r = await fetch(base + path);
        const ct = r.headers.get('content-type') || '';
        const body = await r.text();
        const onDisk = existsSync(join(WWW, path)) ? readFileSync(join(WWW, path), 'utf8') : null;
        await check(`GET ${path} is served from www/ as ${ct || 'a file'}`,
            r.status === 200 && type.test(ct) && body === onDisk,
            [`status ${r.status}, content-type ${ct}, matches www${path}: ${body === onDisk}`]);
    }
}

async function desktopUser(browser, base, user) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    const rec = watch(page, 'desktop', [401, 422]);
    current = rec;
    const origin = new URL(base).origin;
    let token = null;

    await page.goto(base + '/');
    need(await until(() => shown(page, '#auth-form')), '#auth-form visible on the logged-out home page');
    await check('logged out: #auth-form shown, #user, #library and #story hidden, #countdown hidden',
        !(await shown(page, '#user')) && !(await shown(page, '#library')) && !(await shown(page, '#story')) &&
        !(await shown(page, '#countdown')));
    await check('logged out: #message is hidden when there is nothing to say',
        !(await shown(page, '#message')));
    await shot(page, 'desktop-home');

    // --- sign up (mouse): the 201's token logs in at once, no /login
    await page.fill('#email', user.email);
    await page.fill('#password', user.password);
    const signup = await act(page, 'POST', '/signup', () => page.click('#signup-btn'));
    await checkEq('sign-up: POST /signup answers 201', 201, signup.status());
    need(await until(() => shown(page, '#user')), '#user visible after sign-up');
    await checkText('sign-up: #user-email shows the email', page, '#user-email', user.email);
    await check('sign-up: #auth-form hidden and #library shown', !(await shown(page, '#auth-form')) &&
        await until(() => shown(page, '#library')));
    await check('sign-up logs in with the token of the 201 (no POST /login)',
        !rec.requests.some((r) => new URL(r.url()).pathname === '/login'));
    await page.reload();
    await check('the session survives a reload of the tab: #user-email still shows the email',
        await until(async () => (await shown(page, '#user')) && (await text(page, '#user-email')) === user.email));

    // --- log out, then log in by keyboard only (Tab / typing / Enter)
    await page.click('#logout-btn');
    need(await until(() => shown(page, '#auth-form')), '#auth-form visible after log-out');
    await check('log-out: #user and #library hidden', !(await shown(page, '#user')) && !(await shown(page, '#library')));
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    need(await tabTo(page, 'email'), 'Tab reaches #email');
    await page.keyboard.press('Control+A');
    await page.keyboard.type(user.email);
    need(await tabTo(page, 'password'), 'Tab reaches #password');
    await page.keyboard.press('Control+A');
    await page.keyboard.type(user.password);
    need(await tabTo(page, 'login-btn'), 'Tab reaches #login-btn');
    const login = await act(page, 'POST', '/login', () => page.keyboard.press('Enter'));
    await checkEq('keyboard log-in (Tab, typing, Enter): POST /login answers 200', 200, login.status());
    token = (await jsonOf(login))?.access_token;
    need(token, 'the /login answer carries an access_token');
    await check('keyboard log-in: #user-email shows the email', await until(async () =>
        (await shown(page, '#user')) && (await text(page, '#user-email')) === user.email));
    await check('after log-in the app sends the token as Authorization: Bearer', await until(() =>
        rec.requests.some((r) => r.headers().authorization === `Bearer ${token}`)), [
        'no request with the token from /login seen']);

    // --- start a story
    const input = { genre: 'mystery', characters: 'a lighthouse keeper and a cat', opening: 'The lamp went dark at midnight.' };
    await fillStoryForm(page, input.genre, input.characters, input.opening);
    const start = await act(page, 'POST', '/start-story', () => page.click('#start-btn'));
    await checkEq('start: POST /start-story answers 200', 200, start.status());
    const sent = start.request().postDataJSON();
    await check('start: the form fields are sent as genre / characters / opening_line',
        sent && sent.genre === input.genre && sent.characters === input.characters && sent.opening_line === input.opening,
        [`sent: ${JSON.stringify(sent)}`]);
    let story = await jsonOf(start);
    need(story && story.id, 'the start-story answer is a story');
    const id = story.id;
    need(await until(() => shown(page, '#story')), '#story visible after start');
    await check('start: one part shown', await until(async () => (await page.locator(PARTS).count()) === 1));
    await checkPart(page, 1, story.parts[0], 'start');
    await checkText('start: #story-title is the generated title', page, '#story-title', squash(story.title));
    await check('start: #story-status is "in progress" (data-status in_progress)', await until(async () =>
        (await attr(page, '#story-status', 'data-status')) === 'in_progress' &&
        (await text(page, '#story-status')) === 'in progress'), [
        `data-status=${await attr(page, '#story-status', 'data-status')} text=${await text(page, '#story-status')}`]);
    await checkRate(rec, 'after start-story');
    await check('start: the story appears in #stories-list (data-id = its id)',
        await until(() => page.locator(`#stories-list [data-testid="story-item"][data-id="${id}"]`).count()));
    await shot(page, 'desktop-story');

    // --- continue with free text, by keyboard; the request is held to see the busy state
    const free = 'The cat finds a brass key under the stairs.';
    let release;
    const gate = new Promise((r) => { release = r; });
    await page.route('**/continue-story', async (route) => { await gate; await route.continue(); });
    await page.locator('#user-input').focus();
    await page.keyboard.type(free);
    need(await tabTo(page, 'continue-btn'), 'Tab reaches #continue-btn');
    const contWait = act(page, 'POST', '/continue-story', () => page.keyboard.press('Enter'));
    await check('busy while continue-story runs: aria-busy="true" on #story or body', await until(() => isBusy(page), 3000));
    await check('busy while continue-story runs: #continue-btn disabled',
        await until(() => page.locator('#continue-btn').isDisabled(), 3000));
    release();
    const cont1 = await contWait;
    await page.unroute('**/continue-story');
    await checkEq('continue (keyboard, free text): POST /continue-story answers 200', 200, cont1.status());
    await check('continue: the free text is sent as user_input for this story',
        cont1.request().postDataJSON()?.user_input === free && cont1.request().postDataJSON()?.story_id === id,
        [`sent: ${cont1.request().postData()}`]);
    story = await jsonOf(cont1);
    await check('continue: parts grow from 1 to 2', await until(async () => (await page.locator(PARTS).count()) === 2));
    await checkPart(page, 2, story.parts[1], 'continue');
    await check('after the answer aria-busy is no longer "true" and #continue-btn is enabled again',
        await until(async () => !(await isBusy(page)) && !(await page.locator('#continue-btn').isDisabled())));

    // --- suggestions, then continue with one of them (one click = one POST)
    const sugg = await act(page, 'GET', '/suggestions', () => page.click('#suggest-btn'));
    await checkEq('suggestions: GET /suggestions answers 200', 200, sugg.status());
    await checkEq('suggestions: asked for this story', id, new URL(sugg.url()).searchParams.get('story_id'));
    const offered = (await jsonOf(sugg))?.suggestions || [];
    const buttons = page.locator('#suggestions [data-testid="suggestion"]');
    await check('suggestions: three suggestion buttons in #suggestions', await until(async () => (await buttons.count()) === 3));
    const shownTexts = (await buttons.allTextContents()).map(squash);
    await check('suggestions: the buttons show the API\'s three suggestions',
        offered.length === 3 && offered.every((s, i) => shownTexts[i] && shownTexts[i].includes(squash(s))),
        [`API: ${JSON.stringify(offered)}`, `buttons: ${JSON.stringify(shownTexts)}`]);
    await shot(page, 'desktop-suggestions');
    const before = rec.requests.filter((r) => r.url().endsWith('/continue-story')).length;
    const cont2 = await act(page, 'POST', '/continue-story', () => buttons.first().click());
    await checkEq('continue with a suggestion: POST /continue-story answers 200', 200, cont2.status());
    await checkEq('continue with a suggestion: its text is the user_input sent', offered[0], cont2.request().postDataJSON()?.user_input);
    story = await jsonOf(cont2);
    await check('continue with a suggestion: parts grow from 2 to 3', await until(async () => (await page.locator(PARTS).count()) === 3));
    await checkEq('continue with a suggestion: the API stored it as the part\'s user_input', offered[0], story?.parts?.[2]?.user_input);
    await checkPart(page, 3, story.parts[2], 'continue with a suggestion');
    await quiet(rec);
    await checkEq('one click on a suggestion sends exactly one POST /continue-story', before + 1,
        rec.requests.filter((r) => r.url().endsWith('/continue-story')).length);
    await checkRate(rec, 'after continue-story');

    // --- end it
    const end = await act(page, 'POST', '/end-story', () => page.click('#end-btn'));
    await checkEq('end: POST /end-story answers 200', 200, end.status());
    story = await jsonOf(end);
    await check('end: #story-status is "completed" (data-status completed)', await until(async () =>
        (await attr(page, '#story-status', 'data-status')) === 'completed' && (await text(page, '#story-status')) === 'completed'));
    await check('end: parts grow from 3 to 4', await until(async () => (await page.locator(PARTS).count()) === 4));
    await checkPart(page, 4, story.parts[3], 'end');
    for (const sel of ['#continue-btn', '#user-input', '#suggest-btn', '#end-btn']) {
        await check(`completed story: ${sel} is hidden or disabled`, await until(() => goneOrDisabled(page, sel), 3000));
    }
    await shot(page, 'desktop-completed');

    // --- the library
    const item = page.locator(`#stories-list [data-testid="story-item"][data-id="${id}"]`);
    await check('library: the item refreshes to status completed', await until(async () =>
        (await item.count()) === 1 && /completed/i.test(await item.textContent())), [
        `item text: ${await item.first().textContent({ timeout: 1000 }).catch(() => '(none)')}`]);
    const itemText = squash(await item.textContent());
    await check('library: the item shows the title and the genre',
        itemText.includes(squash(story.title)) && itemText.toLowerCase().includes(input.genre), [`item: ${itemText}`]);
    await checkRate(rec, 'after the list refresh');
    await page.reload();
    need(await until(() => shown(page, '#library')), '#library visible after reload');
    need(await until(() => item.count()), 'the story item is listed after reload');
    const open = await act(page, 'GET', `/stories/${id}`, () => item.locator('[data-testid="open-story"]').click());
    await checkEq('open-story: GET /stories/{id} answers 200', 200, open.status());
    await check('open-story: #story shows the saved story (title, 4 parts, completed)', await until(async () =>
        (await shown(page, '#story')) && (await text(page, '#story-title')) === squash(story.title) &&
        (await page.locator(PARTS).count()) === 4 && (await attr(page, '#story-status', 'data-status')) === 'completed'));

    // --- delete it: delete-story, then confirm-delete inside the same item
    await item.locator('[data-testid="delete-story"]').click();
    const confirm = item.locator('[data-testid="confirm-delete"]');
    need(await until(() => confirm.isVisible()), 'confirm-delete shows inside the item');
    await check('delete-story alone sends no DELETE', !rec.requests.some((r) => r.method() === 'DELETE'));
    const del = await act(page, 'DELETE', `/stories/${id}`, () => confirm.click());
    await checkEq('delete: DELETE /stories/{id} answers 204', 204, del.status());
    await check('delete: the item leaves #stories-list', await until(async () => (await item.count()) === 0));
    const auth = { headers: { Authorization: `Bearer ${token}` } };
    const list = await (await fetch(`${origin}/stories?limit=100`, auth)).json();
    await check('delete: GET /stories no longer lists the story', Array.isArray(list.stories) &&
        !list.stories.some((s) => s.id === id), [`GET /stories: ${JSON.stringify(list).slice(0, 300)}`]);
    await checkEq('delete: GET /stories/{id} answers 404', 404, (await fetch(`${origin}/stories/${id}`, auth)).status);

    // --- a 51-character genre (maxlength removed) gives a readable 422 message
    await page.evaluate(() => document.querySelector('#genre').removeAttribute('maxlength'));
    await fillStoryForm(page, 'g'.repeat(51), 'a tired dragon', '');
    const bad = await act(page, 'POST', '/start-story', () => page.click('#start-btn'));
    await checkEq('51-character genre: POST /start-story answers 422', 422, bad.status());
    await check('422: #message is shown', await until(() => shown(page, '#message')));
    const msg = await text(page, '#message');
    await check('422: #message is a readable sentence, not raw JSON', readable(msg), [`#message: ${msg}`]);
    diag(`422 message: ${msg}`);
    await checkEq('422: #message has role="alert"', 'alert', await attr(page, '#message', 'role'));
    await checkRate(rec, 'after the 422');
    await check('422: #start-btn is enabled again', await until(async () => !(await page.locator('#start-btn').isDisabled())));

    // --- paging: 25 stories (made through the API) are all reachable with #more-stories
    const made = [];
    for (let i = 0; i < 25; i++) {
        const r = await fetch(`${origin}/start-story`, { method: 'POST', headers: { ...auth.headers,
            'Content-Type': 'application/json' }, body: JSON.stringify({ genre: `saga ${i}`, characters: 'a scribe' }) });
        need(r.status === 200, `POST /start-story through the API answers 200 (got ${r.status})`);
        made.push((await r.json()).id);
    }
    const items = page.locator('#stories-list [data-testid="story-item"]');
    await act(page, 'GET', '/stories', () => page.click('#refresh-stories'));
    need(await until(async () => (await items.count()) > 0), '#refresh-stories lists stories');
    let pages = 1;
    while (pages < 10 && await until(() => shown(page, '#more-stories'), 500)) {
        const more = await act(page, 'GET', '/stories', () => page.click('#more-stories'));
        await check(`#more-stories (page ${pages + 1}) asks GET /stories with the cursor it was given`,
            more.status() === 200 && new URL(more.url()).searchParams.get('cursor'), [`request: ${more.url()} -> ${more.status()}`]);
        pages += 1;
        await quiet(rec);
    }
    const listed = await items.evaluateAll((els) => els.map((e) => e.getAttribute('data-id')));
    await check(`paging: the 25 stories are listed once each over ${pages} page(s), then #more-stories hides`,
        listed.length === 25 && new Set(listed).size === 25 && made.every((x) => listed.includes(x)) &&
        !(await shown(page, '#more-stories')), [`listed ${listed.length} items (${new Set(listed).size} distinct)`]);
    await shot(page, 'desktop-library');

    // --- a 401 on a logged-in request logs out with a message (a token the gateway refuses)
    await page.route('**/stories*', (route) => route.continue({ headers: { ...route.request().headers(),
        authorization: 'Bearer not.a.token' } }));
    const refused = await act(page, 'GET', '/stories', () => page.click('#refresh-stories'));
    await page.unroute('**/stories*');
    await checkEq('refused token: GET /stories answers 401', 401, refused.status());
    await check('401: the app logs out (#auth-form shown, #user and #library hidden)', await until(async () =>
        (await shown(page, '#auth-form')) && !(await shown(page, '#user')) && !(await shown(page, '#library'))));
    const msg401 = squash(await page.locator('#message').textContent());
    await check('401: #message says so in a readable sentence', (await shown(page, '#message')) && readable(msg401),
        [`#message: ${msg401}`]);
    diag(`401 message: ${msg401}`);
    const foreign = rec.requests.filter((r) => !r.url().startsWith(origin) && !r.url().startsWith('data:'));
    await check('every request of the page went to its own origin', foreign.length === 0,
        foreign.map((r) => `foreign request: ${r.url()}`));
    await checkNoConsoleErrors(rec);
    await ctx.close();
}

async function anonymousLimit(browser, base) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    const rec = watch(page, 'anonymous', [429]);
    current = rec;

    await page.goto(base + '/');
    need(await until(() => shown(page, '#new-story-form')), '#new-story-form visible');
    await fillStoryForm(page, 'fable', 'a crow and a fox', '');
    const first = await act(page, 'POST', '/start-story', () => page.click('#start-btn'));
    await checkEq('anonymous start: POST /start-story answers 200', 200, first.status());
    await check('anonymous start: the story is shown, #library stays hidden', await until(async () =>
        (await shown(page, '#story')) && (await page.locator(PARTS).count()) === 1) && !(await shown(page, '#library')));
    await checkRate(rec, 'after the anonymous start');
    await checkEq('anonymous start: #rate data-tier is ai_anonymous', 'ai_anonymous', await attr(page, '#rate', 'data-tier'));

    // Start again until the ai_anonymous bucket (burst 2) refuses: at most 3 more.
    let refused = null;
    for (let i = 0; i < 3 && !refused; i++) {
        need(await until(async () => !(await page.locator('#start-btn').isDisabled())), '#start-btn enabled before the next start');
        const r = await act(page, 'POST', '/start-story', () => page.click('#start-btn'));
        if (r.status() === 429) refused = r;
        else need(r.status() === 200, `start-story answered ${r.status()} (expected 200 or 429)`);
    }
    need(refused, 'a 429 within 3 more starts (ai_anonymous burst 2)');
    pass('anonymous starts hit the limit: 429');
    const retryAfter = Number(refused.headers()['retry-after']);
    diag(`Retry-After: ${retryAfter}`);
    need(await until(() => shown(page, '#countdown')), '#countdown shown after the 429');
    const s1 = Number(await attr(page, '#countdown', 'data-seconds'));
    const t1 = Date.now();
    const cd1 = await text(page, '#countdown');
    await check('429: #countdown starts at Retry-After (data-seconds, and its text shows it)',
        Number.isInteger(s1) && s1 >= Math.max(1, retryAfter - 1) && s1 <= retryAfter && new RegExp(`\\b${s1}\\s*s`).test(cd1),
        [`Retry-After ${retryAfter}, data-seconds ${s1}, text "${cd1}"`]);
    for (const sel of ['#start-btn', '#continue-btn', '#end-btn', '#suggest-btn']) {
        await check(`429: ${sel} is disabled while the countdown runs`, await page.locator(sel).isDisabled());
    }
    const msg = squash(await page.locator('#message').textContent());
    await check('429: #message, if shown, is readable (not raw JSON)',
        !(await shown(page, '#message')) || readable(msg), [`#message: ${msg}`]);
    await checkRate(rec, 'after the 429');
    await shot(page, 'desktop-429', false);

    // Read again 1.15 s later: with 3 or more seconds left it must still run, one or two
    // seconds lower; with less it may have ended (hidden counts as 0).
    await sleep(Math.max(0, 1150 - (Date.now() - t1)));
    const still = await shown(page, '#countdown');
    const s2 = still ? Number(await attr(page, '#countdown', 'data-seconds')) : 0;
    const cd2 = still ? await text(page, '#countdown') : '(hidden)';
    await check('the countdown decreases: data-seconds read 1.15 s apart', Number.isInteger(s2) && s2 < s1 &&
        (s1 < 3 || (still && s2 >= s1 - 2)), [`first ${s1}, then ${s2} (${cd2})`]);
    if (still) {
        await check('the countdown text follows data-seconds', new RegExp(`\\b${s2}\\s*s`).test(cd2),
            [`data-seconds ${s2}, text "${cd2}"`]);
    }
    await check('at 0 the countdown hides and #start-btn is enabled again', await until(async () =>
        !(await shown(page, '#countdown')) && !(await page.locator('#start-btn').isDisabled()), (retryAfter + 5) * 1000));
    await check('the other buttons are enabled again too', await until(async () =>
        !(await page.locator('#continue-btn').isDisabled()) && !(await page.locator('#end-btn').isDisabled()) &&
        !(await page.locator('#suggest-btn').isDisabled()), 3000));
    const again = await act(page, 'POST', '/start-story', () => page.click('#start-btn'));
    await checkEq('after the countdown a new start works: 200', 200, again.status());
    const fresh = await jsonOf(again);
    await check('after the countdown: the new story is shown', await until(async () =>
        (await page.locator(PARTS).count()) === 1 && (await text(page, '#story-title')) === squash(fresh?.title)));
    await checkNoConsoleErrors(rec);
    await ctx.close();
}

async function phone(browser, base, user) {
    const ctx = await browser.newContext({ viewport: { width: 375, height: 812 }, isMobile: true, hasTouch: true,
        deviceScaleFactor: 2 });
    const page = await ctx.newPage();
    const rec = watch(page, 'phone', []);
    current = rec;

    await page.goto(base + '/');
    need(await until(() => shown(page, '#auth-form')), '#auth-form visible on the phone');
    const o1 = await overflowX(page);
    await check('phone home: no horizontal scroll (scrollWidth <= innerWidth)', o1 <= 0, [`overflow ${o1}px`]);
    await shot(page, 'phone-home');
    await page.fill('#email', user.email);
    await page.fill('#password', user.password);
    const login = await act(page, 'POST', '/login', () => page.locator('#login-btn').tap());
    await checkEq('phone log-in (tap): 200', 200, login.status());
    need(await until(() => shown(page, '#user')), '#user visible on the phone after log-in');
    await fillStoryForm(page, 'science fiction', 'a botanist and a maintenance robot on a generation ship',
        'The greenhouse doors had been sealed for eleven years.');
    const start = await act(page, 'POST', '/start-story', () => page.locator('#start-btn').tap());
    await checkEq('phone start (tap): 200', 200, start.status());
    const story = await jsonOf(start);
    need(await until(() => shown(page, '#story')), '#story visible on the phone');
    const cont = await act(page, 'POST', '/continue-story', async () => {
        await page.fill('#user-input', 'The robot hums a song nobody taught it.');
        await page.locator('#continue-btn').tap();
    });
    await checkEq('phone continue (tap): 200', 200, cont.status());
    await check('phone: two parts shown', await until(async () => (await page.locator(PARTS).count()) === 2));
    await checkText('phone: #story-title shows the title', page, '#story-title', squash(story.title));
    await page.locator(PARTS).first().scrollIntoViewIfNeeded();
    const box = await page.locator(PARTS).first().boundingBox();
    await check('phone: the first part fits the 375 px width', box && box.x >= 0 && box.x + box.width <= 375 + 0.5,
        [`bounding box ${JSON.stringify(box)}`]);
    const fontPx = await page.locator(PARTS).first().evaluate((el) => parseFloat(getComputedStyle(el).fontSize));
    await check('phone: the story text is at least 14 px (readable)', fontPx >= 14, [`font-size ${fontPx}px`]);
    await quiet(rec);
    const o2 = await overflowX(page);
    await check('phone story view: no horizontal scroll (scrollWidth <= innerWidth)', o2 <= 0, [`overflow ${o2}px`]);
    // The viewport, scrolled to the story: the page below it holds the whole library.
    await page.locator('#story').evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await shot(page, 'phone-story', false);
    await checkNoConsoleErrors(rec);
    await ctx.close();
}

// ------------------------------------------------------------------------------ main

if (!BASE_ARG || !OUT_ARG) {
    console.log('not ok 1 - usage: node tests/browser/e2e.mjs BASE_URL OUT_DIR');
    process.exit(1);
}
const BASE = BASE_ARG.replace(/\/+$/, '');
const OUT = resolve(OUT_ARG);
mkdirSync(join(OUT, 'screenshots'), { recursive: true });

let chromium;
try {
    ({ chromium } = await import('playwright-core'));
} catch (e) {
    await fail('playwright-core is installed in tests/browser (make deps runs npm ci there)', [e.message]);
    process.exit(1);
}

let browser;
try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true, timeout: 30000,
        handleSIGTERM: false, handleSIGINT: false });
} catch (e) {
    await fail(`Chromium starts (${CHROMIUM})`, [e.message.split('\n').slice(0, 5).join('\n')]);
    process.exit(1);
}
pass(`Chromium ${browser.version()} starts headless`);

// The hang guard (timeout in 70-browser.sh) sends SIGTERM: say where we were, close the
// browser (it must not outlive us) and stop; the errors of the closing browser are no news.
let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT']) {
    process.once(sig, async () => {
        stopping = true;
        console.log(`# ${sig} during flow ${current ? current.name : '(none)'}: closing Chromium`);
        await browser.close().catch(() => {});
        process.exit(1);
    });
}

const tag = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const user = { email: `e2e-${tag}@example.com`, password: 'correct horse battery' };

async function run(name, fn) {
    try {
        await fn();
    } catch (e) {
        if (stopping) await new Promise(() => {}); // wait for process.exit
        const what = e instanceof StepError ? e.message : e.message.split('\n').slice(0, 4).join('\n');
        await fail(`${name}: the flow ran to its end`, [`stopped at: ${what}`]);
    }
}

await run('preflight', () => preflight(BASE));
await run('desktop', () => desktopUser(browser, BASE, user));
await run('anonymous', () => anonymousLimit(browser, BASE));
await run('phone', () => phone(browser, BASE, user));
current = null;
await browser.close();
console.log(`# e2e: ${checkN - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
