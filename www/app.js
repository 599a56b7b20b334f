// www/app.js: the story web app. Plain JavaScript, no build step, no framework, nothing
// from another host. It talks to the gateway on the same origin (fetch('/start-story')...).
//
// Rules kept throughout:
// - every string from the API is hostile: it reaches the page only through textContent,
//   text nodes or setAttribute on data-/aria- attributes, never as HTML;
// - the token lives in sessionStorage (one tab, survives a reload) and is sent as
//   Authorization: Bearer;
// - each request belongs to a class (ai, api, auth) like the gateway's tiers; a 429 on a
//   class disables the buttons of that class until the Retry-After countdown ends;
// - the hooks (ids, data-testid) are the contract with the browser test
//   (notes/www-contract.md): do not rename them.
(() => {
    'use strict';

    const PAGE_SIZE = 20;              // stories per page of the library
    const REQUEST_TIMEOUT_MS = 120000; // a generation may take MISTRAL_TIMEOUT (30 s) and more
    const MAX_PARTS = 30;              // the gateway refuses a continuation beyond this
    const MAX_MESSAGE = 400;           // characters of an API sentence shown at most
    const KEY = { token: 'sg.token', email: 'sg.email', story: 'sg.story' };
    const CLASSES = ['ai', 'api', 'auth'];

    // What the person is told a request class is about.
    const CLASS_WORDS = {
        ai: { left: 'story requests left', many: 'story requests', paused: 'Story buttons paused.' },
        api: { left: 'requests left', many: 'requests', paused: 'Library buttons paused.' },
        auth: { left: 'sign-in attempts left', many: 'sign-in attempts', paused: 'Log-in and sign-up paused.' },
    };

    // Field names in 422 answers ("loc":["body","genre"]) and the input that holds each.
    const FIELDS = {
        genre: { label: 'Genre', input: 'genre' },
        characters: { label: 'Characters', input: 'characters' },
        opening_line: { label: 'Opening line', input: 'opening-line' },
        user_input: { label: 'Your text', input: 'user-input' },
        story_id: { label: 'Story', input: null },
        email: { label: 'Email', input: 'email' },
        password: { label: 'Password', input: 'password' },
        username: { label: 'Email', input: 'email' },
        limit: { label: 'Page size', input: null },
        cursor: { label: 'Page position', input: null },
    };

    const $ = (id) => document.getElementById(id);
    const el = {};
    [
        'rate', 'rate-text', 'auth-form', 'email', 'password', 'login-btn', 'signup-btn', 'user',
        'user-email', 'logout-btn', 'message-box', 'message', 'message-close', 'countdown',
        'countdown-label', 'countdown-seconds', 'status', 'story', 'story-genre', 'story-status',
        'story-title', 'story-characters', 'story-parts', 'story-writing', 'story-actions',
        'continue-form', 'user-input', 'continue-btn', 'suggest-btn', 'end-btn', 'story-cap',
        'suggestions-box', 'suggestions', 'story-done', 'another-btn', 'story-note', 'new-story',
        'new-story-heading', 'anon-note', 'new-story-form', 'genre', 'characters', 'opening-line',
        'start-btn', 'ideas-btn', 'start-writing', 'ideas-box', 'ideas', 'library',
        'library-heading', 'refresh-stories', 'stories-empty', 'stories-list', 'more-stories',
    ].forEach((id) => { el[id] = $(id); });

    const state = {
        token: null,
        email: null,
        story: null,         // the story on screen (the API object)
        storyOwned: false,   // started or opened with a token: it is in the library
        busy: { ai: 0, api: 0, auth: 0 },
        busyRegions: new Map(),
        cooldown: { ai: 0, api: 0, auth: 0 }, // Date.now() when each class may send again
        cooldownStart: 0,
        cooldownTotal: 0,
        cooldownTimer: null,
        refusedButton: null, // the button whose request got the 429 (focus returns to it)
        messageKind: null,   // 'error' | 'info' | 'rate'
        list: { seq: 0, cursor: null, ids: new Set() },
        rates: {},           // the last rate-limit line seen per class (the badge's tooltip)
    };

    // ------------------------------------------------------------------ small helpers

    // h TAG PROPS ...KIDS: an element; strings among KIDS become text nodes (never HTML).
    function h(tag, props, ...kids) {
        const node = document.createElement(tag);
        for (const [k, v] of Object.entries(props || {})) {
            if (v === null || v === undefined || v === false) continue;
            if (k === 'text') node.textContent = v;
            else if (k === 'class') node.className = v;
            else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
            else node.setAttribute(k, v === true ? '' : String(v));
        }
        for (const kid of kids) {
            if (kid !== null && kid !== undefined && kid !== false) node.append(kid);
        }
        return node;
    }

    function storageGet(key) {
        try {
            return sessionStorage.getItem(key);
        } catch (_) {
            return null;
        }
    }

    function storageSet(key, value) {
        try {
            if (value === null || value === undefined) sessionStorage.removeItem(key);
            else sessionStorage.setItem(key, value);
        } catch (_) {
            // storage full or refused: the app still works for this page's life
        }
    }

    // Characters as the gateway counts them (code points, not UTF-16 units).
    const charCount = (s) => Array.from(s).length;
    const clip = (s, n) => (charCount(s) > n ? `${Array.from(s).slice(0, n - 1).join('')}…` : s);

    // sentence S: S with a capital first letter and a final stop.
    function sentence(s) {
        let t = clip(String(s).trim(), MAX_MESSAGE);
        if (!t) return t;
        t = t.charAt(0).toUpperCase() + t.slice(1);
        return /[.!?…]$/.test(t) ? t : `${t}.`;
    }

    const isShown = (node) => node && !node.hidden && node.getClientRects().length > 0;

    function focusNode(node) {
        if (!node) return;
        node.focus({ preventScroll: true });
        node.scrollIntoView({ block: 'nearest', behavior: prefersMotion() ? 'smooth' : 'auto' });
    }

    function prefersMotion() {
        return !window.matchMedia || !window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    }

    function announce(text) {
        // A polite status for good news; errors go to #message (role="alert").
        el.status.textContent = '';
        window.setTimeout(() => { el.status.textContent = text; }, 50);
    }

    // --------------------------------------------------------------------- messages

    function showMessage(kind, text) {
        state.messageKind = kind;
        el.message.textContent = text;
        el.message.dataset.kind = kind;
        el['message-box'].dataset.kind = kind;
        el.message.hidden = false;
        el['message-box'].hidden = false;
    }

    function clearMessage() {
        state.messageKind = null;
        el.message.textContent = '';
        el.message.hidden = true;
        el['message-box'].hidden = true;
        for (const bad of document.querySelectorAll('[aria-invalid="true"]')) bad.removeAttribute('aria-invalid');
    }

    // -------------------------------------------------------------------- rate badge

    // showRate RES CLS: the remaining requests of the tier of this answer, from its
    // RateLimit-* headers (answers without them, e.g. while Redis is down, change nothing).
    function showRate(res, cls) {
        const limit = res.headers.get('RateLimit-Limit');
        const remaining = res.headers.get('RateLimit-Remaining');
        if (limit === null || remaining === null) return;
        const policy = res.headers.get('RateLimit-Policy') || '';
        const tierMatch = policy.match(/^\s*"([^"]*)"/);
        const tier = tierMatch ? tierMatch[1] : '';
        const windowMatch = policy.match(/;\s*w=(\d+)/);
        const rem = Number.parseInt(remaining, 10);
        const lim = Number.parseInt(limit, 10);
        const words = CLASS_WORDS[cls] || CLASS_WORDS.api;

        el.rate.dataset.remaining = remaining.trim();
        el.rate.dataset.limit = limit.trim();
        el.rate.dataset.tier = tier;
        el['rate-text'].textContent = `${remaining.trim()} of ${limit.trim()} ${words.left}`;
        let level = 'ok';
        if (!(rem > 0)) level = 'empty';
        else if (lim > 0 && rem / lim <= 0.4) level = 'low';
        el.rate.dataset.level = level;
        const ratio = lim > 0 ? Math.max(0, Math.min(1, rem / lim)) : 0;
        el.rate.style.setProperty('--fill', String(ratio));
        // The badge follows the last answer (the contract); its tooltip keeps every class.
        let line = `${words.many.charAt(0).toUpperCase()}${words.many.slice(1)}: ${remaining.trim()} of ` +
            `${limit.trim()} left (tier "${tier}"`;
        if (windowMatch) line += `, full again ${windowMatch[1]} s after running out`;
        state.rates[cls] = `${line}).`;
        el.rate.title = CLASSES.filter((c) => state.rates[c]).map((c) => state.rates[c]).join('\n');
    }

    // -------------------------------------------------------------------- API access

    class ApiError extends Error {
        constructor(status, data, { cls, retryAfter, withToken, network }) {
            super(`HTTP ${status}`);
            this.status = status;
            this.data = data;
            this.cls = cls;
            this.retryAfter = retryAfter;
            this.withToken = withToken;
            this.network = network || null; // 'offline' | 'timeout' for status 0
        }
    }

    // api METHOD PATH {body, cls}: the answer's JSON (null for 204) or an ApiError.
    async function api(method, path, { body, cls }) {
        const headers = { Accept: 'application/json' };
        if (body !== undefined) headers['Content-Type'] = 'application/json';
        const withToken = Boolean(state.token);
        if (withToken) headers.Authorization = `Bearer ${state.token}`;
        const ctrl = new AbortController();
        const timer = window.setTimeout(() => ctrl.abort(), REQUEST_TIMEOUT_MS);
        let res;
        try {
            res = await fetch(path, {
                method,
                headers,
                body: body === undefined ? undefined : JSON.stringify(body),
                credentials: 'same-origin',
                cache: 'no-store',
                signal: ctrl.signal,
            });
        } catch (e) {
            window.clearTimeout(timer);
            throw new ApiError(0, null, { cls, withToken, network: e && e.name === 'AbortError' ? 'timeout' : 'offline' });
        }
        showRate(res, cls);
        let data = null;
        try {
            const text = await res.text();
            data = text ? JSON.parse(text) : null;
        } catch (_) {
            data = null; // not JSON (lighttpd's own 413, a proxy page): described by status
        } finally {
            window.clearTimeout(timer);
        }
        if (!res.ok) {
            throw new ApiError(res.status, data, { cls, withToken, retryAfter: res.headers.get('Retry-After') });
        }
        return data;
    }

    // describe ERR WHAT: a readable sentence for a failed request (never raw JSON).
    function describe(err, what) {
        const data = err.data && typeof err.data === 'object' ? err.data : {};
        const detail = typeof data.detail === 'string' ? data.detail : '';
        if (err.status === 0) {
            if (err.network === 'timeout') return 'The server took too long to answer. Please try again.';
            return 'Could not reach the server. Check your connection and try again.';
        }
        if (err.status === 422 && Array.isArray(data.detail)) return describe422(data.detail);
        switch (err.status) {
            case 401:
                if (what === 'login') return sentence(detail || 'Incorrect email or password');
                return 'Your session has ended. Please log in again.';
            case 404:
                if (what === 'open' || what === 'continue' || what === 'end' || what === 'suggest') {
                    return 'This story could not be found. It may have been deleted, or it expired (stories started without an account last 24 hours).';
                }
                if (what === 'delete') return 'This story was already deleted.';
                return sentence(detail || 'Not found');
            case 409:
                if (/already registered/i.test(detail)) return 'This email is already registered. Log in instead, or use another email.';
                return sentence(detail || 'This story changed meanwhile; please try again');
            case 413: return 'That is too much text to send at once. Please shorten it.';
            case 415: return 'The server could not read this request. Please reload the page and try again.';
            case 502: return 'The storyteller could not write this part. Please try again.';
            case 503:
                if (/busy/i.test(detail)) return 'The storyteller is busy right now. Please try again in a moment.';
                return 'The service is temporarily unavailable. Please try again in a moment.';
            case 504: return 'The storyteller took too long to answer. Please try again.';
            default:
                if (detail) return sentence(detail);
                if (err.status >= 500) return `Something went wrong on the server (error ${err.status}). Please try again.`;
                return `The request was refused (error ${err.status}).`;
        }
    }

    // describe422 ITEMS: "Genre: String should have at most 50 characters" (at most three).
    function describe422(items) {
        const lines = items.slice(0, 3).map((item) => {
            const loc = Array.isArray(item && item.loc) ? item.loc : [];
            const name = loc.length ? String(loc[loc.length - 1]) : '';
            const label = FIELDS[name] ? FIELDS[name].label : (name ? name.replace(/_/g, ' ') : 'Input');
            const msg = item && typeof item.msg === 'string' ? item.msg : 'is not valid';
            return clip(`${label.charAt(0).toUpperCase()}${label.slice(1)}: ${msg}`, 200);
        });
        return lines.length ? lines.join('. ') : 'Some of the input is not valid.';
    }

    function field422(err) {
        const items = err.data && Array.isArray(err.data.detail) ? err.data.detail : [];
        for (const item of items) {
            const loc = Array.isArray(item && item.loc) ? item.loc : [];
            const f = FIELDS[String(loc[loc.length - 1])];
            if (f && f.input && isShown($(f.input))) return $(f.input);
        }
        return null;
    }

    // retrySeconds ERR: whole seconds to wait after a 429 (Retry-After, else the body).
    function retrySeconds(err) {
        let s = Number.parseInt(err.retryAfter || '', 10);
        if (!(s > 0) && err.data && Number.isFinite(err.data.retry_after)) s = Math.ceil(err.data.retry_after);
        if (!(s > 0)) s = 1;
        return Math.min(s, 3600);
    }

    // fail ERR OPTS: tell the person what went wrong (OPTS of the task: what, button,
    // storyId, quiet) and put the focus somewhere useful, unless the request was one the
    // app made by itself (quiet): then the focus stays where the person is working.
    function fail(err, { what, button = null, storyId = null, quiet = false }) {
        const moveFocus = (node) => { if (!quiet) focusNode(node); };
        if (!(err instanceof ApiError)) {
            showMessage('error', 'Something went wrong in this page. Please reload it and try again.');
            moveFocus(el.message);
            return;
        }
        if (err.status === 429) {
            refused(err, button, !quiet);
            return;
        }
        if (err.status === 401 && err.withToken && what !== 'login' && what !== 'signup') {
            logout({ kind: 'error', text: 'Your session has ended (the server no longer accepts your login). Please log in again.' });
            return;
        }
        if (err.status === 404 && state.story && (what === 'continue' || what === 'end' || what === 'suggest')) {
            closeStory();
        }
        if (err.status === 404 && (what === 'delete' || what === 'open') && storyId) removeItem(storyId);
        showMessage('error', describe(err, what));
        const input = err.status === 422 ? field422(err) : null;
        if (input) {
            input.setAttribute('aria-invalid', 'true');
            moveFocus(input);
        } else {
            moveFocus(el.message);
        }
    }

    // ---------------------------------------------------------------- 429 countdown

    // refused ERR BUTTON FOCUS: a 429: pause the buttons of its class for Retry-After seconds.
    function refused(err, button, focus) {
        const cls = err.cls;
        const seconds = retrySeconds(err);
        const data = err.data && typeof err.data === 'object' ? err.data : {};
        let limits = '';
        if (Number.isFinite(data.limit) && typeof data.rate === 'string' && /^[\d.]+ requests?\/second$/.test(data.rate)) {
            limits = ` (the limit is ${data.limit} at once, then ${data.rate})`;
        }
        const text = `You have sent too many ${CLASS_WORDS[cls].many} for now${limits}. ` +
            'The buttons come back when the countdown below ends.';
        showMessage('rate', text);
        const now = Date.now();
        state.cooldown[cls] = Math.max(state.cooldown[cls], now + seconds * 1000);
        state.refusedButton = button || null;
        const longest = Math.max(...CLASSES.map((c) => state.cooldown[c]));
        state.cooldownStart = now;
        state.cooldownTotal = Math.max(1, longest - now);
        tick();
        if (!state.cooldownTimer) state.cooldownTimer = window.setInterval(tick, 200);
        if (focus) focusNode(el.message);
    }

    // tick: one step of the countdown; #countdown shows the class that waits longest.
    function tick() {
        const now = Date.now();
        let show = null;
        let left = 0;
        let expired = false;
        for (const cls of CLASSES) {
            const ms = state.cooldown[cls] - now;
            if (state.cooldown[cls] && ms <= 0) {
                state.cooldown[cls] = 0;
                expired = true;
            } else if (ms > left) {
                left = ms;
                show = cls;
            }
        }
        if (!show) {
            window.clearInterval(state.cooldownTimer);
            state.cooldownTimer = null;
            el.countdown.hidden = true;
            el.countdown.dataset.seconds = '0';
            updateButtons();
            const hadFocus = document.activeElement === el.message || document.activeElement === document.body;
            if (state.messageKind === 'rate') clearMessage();
            announce('You can send requests again.');
            const back = state.refusedButton;
            state.refusedButton = null;
            if (hadFocus && back && back.isConnected && !back.disabled && isShown(back)) back.focus();
            return;
        }
        const seconds = Math.ceil(left / 1000);
        if (el.countdown.hidden || el.countdown.dataset.seconds !== String(seconds)) {
            el['countdown-label'].textContent = CLASS_WORDS[show].paused;
            el['countdown-seconds'].textContent = String(seconds);
            el.countdown.dataset.seconds = String(seconds);
            el.countdown.dataset.class = show;
            el.countdown.hidden = false;
        }
        el.countdown.style.setProperty('--left', String(Math.min(1, left / state.cooldownTotal)));
        if (expired) updateButtons();
    }

    // ------------------------------------------------------------------ busy states

    // updateButtons: every button that sends a request (data-class) is disabled while its
    // class is busy or cooling down after a 429; story buttons also need a writable story.
    function updateButtons() {
        const now = Date.now();
        const story = state.story;
        const open = Boolean(story) && story.status !== 'completed';
        const roomLeft = open && Array.isArray(story.parts) && story.parts.length < MAX_PARTS;
        for (const b of document.querySelectorAll('button[data-class]')) {
            const cls = b.dataset.class;
            let off = state.busy[cls] > 0 || state.cooldown[cls] > now;
            if (b.dataset.story === 'write') off = off || !roomLeft;
            if (b.dataset.story === 'end') off = off || !open;
            b.disabled = off;
        }
        el['user-input'].disabled = !open;
    }

    function setBusyRegion(node, delta) {
        const n = (state.busyRegions.get(node) || 0) + delta;
        state.busyRegions.set(node, n);
        node.setAttribute('aria-busy', n > 0 ? 'true' : 'false');
    }

    // task OPTS FN: run FN as one request of class OPTS.cls: the class is busy meanwhile
    // (buttons disabled, aria-busy on OPTS.regions, OPTS.note shown); errors are shown.
    async function task(opts, fn) {
        const { cls, what, button = null, regions = [], note = null, quiet = false } = opts;
        if (!quiet) clearMessage();
        state.busy[cls] += 1;
        if (button) button.classList.add('is-busy');
        regions.forEach((r) => setBusyRegion(r, 1));
        if (note) note.hidden = false;
        updateButtons();
        try {
            return await fn();
        } catch (e) {
            fail(e, opts);
            return undefined;
        } finally {
            state.busy[cls] -= 1;
            if (button) button.classList.remove('is-busy');
            regions.forEach((r) => setBusyRegion(r, -1));
            if (note) note.hidden = true;
            updateButtons();
            // A disabled button loses the focus; give it back if nothing else took it.
            const active = document.activeElement;
            if (button && (!active || active === document.body) && button.isConnected && !button.disabled &&
                isShown(button)) {
                button.focus();
            }
        }
    }

    // --------------------------------------------------------------------- accounts

    function jwtExpired(token) {
        try {
            const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
            const claims = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
            return typeof claims.exp === 'number' && claims.exp * 1000 <= Date.now();
        } catch (_) {
            return false; // not ours to judge: the gateway will answer 401 if it is bad
        }
    }

    function setSession(token, email) {
        state.token = token;
        state.email = email;
        storageSet(KEY.token, token);
        storageSet(KEY.email, email);
        renderAccount();
    }

    function renderAccount() {
        const inside = Boolean(state.token);
        el['auth-form'].hidden = inside;
        el.user.hidden = !inside;
        el['user-email'].textContent = inside ? state.email || '' : '';
        el.library.hidden = !inside;
        el['anon-note'].hidden = inside;
        document.body.classList.toggle('signed-in', inside);
    }

    // logout {kind, text}: forget the token; the saved stories leave the screen with it.
    function logout({ kind = 'info', text = 'You are logged out.' } = {}) {
        state.token = null;
        state.email = null;
        storageSet(KEY.token, null);
        storageSet(KEY.email, null);
        state.list.seq += 1; // answers for the old session are dropped
        state.list.cursor = null;
        state.list.ids.clear();
        el['stories-list'].replaceChildren();
        el['more-stories'].hidden = true;
        el['stories-empty'].hidden = true;
        if (state.story && state.storyOwned) closeStory();
        renderAccount();
        el.password.value = '';
        if (kind === 'error') showMessage('error', text);
        else {
            clearMessage();
            announce(text);
        }
        updateButtons();
        focusNode(kind === 'error' ? el.message : el.email);
    }

    async function onAuthSubmit(event) {
        event.preventDefault();
        const mode = event.submitter && event.submitter.id === 'signup-btn' ? 'signup' : 'login';
        const button = mode === 'signup' ? el['signup-btn'] : el['login-btn'];
        const email = el.email.value.trim();
        const password = el.password.value;
        clearMessage();
        if (!email || !password) {
            const missing = !email ? el.email : el.password;
            missing.setAttribute('aria-invalid', 'true');
            showMessage('error', !email ? 'Please enter your email.' : 'Please enter your password.');
            focusNode(missing);
            return;
        }
        if (mode === 'signup' && charCount(password) < 8) {
            el.password.setAttribute('aria-invalid', 'true');
            showMessage('error', 'Password: use at least 8 characters to sign up.');
            focusNode(el.password);
            return;
        }
        await task({ cls: 'auth', what: mode, button, regions: [el['auth-form']] }, async () => {
            const data = await api('POST', mode === 'signup' ? '/signup' : '/login', {
                cls: 'auth', body: { email, password },
            });
            if (!data || typeof data.access_token !== 'string') throw new ApiError(502, null, { cls: 'auth' });
            const shownEmail = mode === 'signup' && data.user && typeof data.user.email === 'string'
                ? data.user.email : email.toLowerCase();
            el.password.value = '';
            setSession(data.access_token, shownEmail);
            announce(mode === 'signup' ? `Account created. You are logged in as ${shownEmail}.`
                : `You are logged in as ${shownEmail}.`);
            updateButtons();
            focusNode(el['library-heading']);
            loadStories({ reset: true, quiet: true });
        });
    }

    // checkSession: on load with a stored token, ask /me who it is (and whether it still works).
    async function checkSession() {
        await task({ cls: 'api', what: 'me', quiet: true }, async () => {
            const me = await api('GET', '/me', { cls: 'api' });
            if (me && typeof me.email === 'string' && state.token) {
                state.email = me.email;
                storageSet(KEY.email, me.email);
                el['user-email'].textContent = me.email;
            }
        });
    }

    // ------------------------------------------------------------------------ story

    const KIND_LABEL = { opening: 'Opening', continuation: 'Part', ending: 'Ending' };

    function renderPart(part) {
        const kind = typeof part.kind === 'string' ? part.kind : '';
        const safeKind = KIND_LABEL[kind] ? kind : 'continuation';
        const node = h('div', {
            class: `part part--${safeKind}`, 'data-testid': 'part', 'data-kind': kind,
            'data-n': String(part.n), tabindex: '-1',
        });
        if (typeof part.user_input === 'string' && part.user_input.length > 0) {
            node.append(h('p', { class: 'part-you' }, h('span', { class: 'part-you-label', text: 'You:' }), ' ',
                part.user_input));
        }
        node.append(h('p', { class: 'part-text', text: typeof part.text === 'string' ? part.text : '' }));
        const model = typeof part.model === 'string' && part.model ? part.model : 'unknown';
        node.append(h('p', { class: 'part-meta' },
            `${KIND_LABEL[safeKind]}${safeKind === 'continuation' ? ` ${part.n}` : ''}`, ' · ',
            h('span', {
                class: 'part-model',
                title: model === 'offline' ? 'Written by the offline storyteller' : `Written by the model ${model}`,
                text: model,
            })));
        return node;
    }

    // showStory STORY OWNED: put STORY on screen (and remember it in the tab).
    function showStory(story, owned) {
        state.story = story;
        state.storyOwned = owned;
        storageSet(KEY.story, JSON.stringify({ story, owned }));
        const done = story.status === 'completed';
        el.story.hidden = false;
        el['story-title'].textContent = story.title || 'Untitled story';
        el['story-genre'].textContent = story.genre || '';
        el['story-status'].dataset.status = String(story.status);
        el['story-status'].textContent = done ? 'completed' : 'in progress';
        el['story-characters'].textContent = story.characters ? `With ${story.characters}` : '';
        const parts = Array.isArray(story.parts) ? story.parts : [];
        el['story-parts'].replaceChildren(...parts.map(renderPart));
        el['story-actions'].hidden = done;
        el['story-done'].hidden = !done;
        el['story-cap'].hidden = done || parts.length < MAX_PARTS;
        el['suggestions'].replaceChildren();
        el['suggestions-box'].hidden = true;
        el['story-note'].textContent = owned
            ? 'Saved in your stories.'
            : 'Not saved to an account: this story is kept for 24 hours, reachable only from this tab.';
        markCurrentItem();
        updateButtons();
    }

    function closeStory() {
        state.story = null;
        state.storyOwned = false;
        storageSet(KEY.story, null);
        el.story.hidden = true;
        el['story-parts'].replaceChildren();
        el['suggestions'].replaceChildren();
        el['suggestions-box'].hidden = true;
        markCurrentItem();
        updateButtons();
    }

    function focusLastPart() {
        const parts = el['story-parts'].querySelectorAll('[data-testid="part"]');
        const last = parts[parts.length - 1];
        if (!last) return;
        last.classList.remove('is-new');
        void last.offsetWidth; // restart the highlight animation
        last.classList.add('is-new');
        focusNode(last);
    }

    function focusStoryTop() {
        el['story-title'].focus({ preventScroll: true });
        el.story.scrollIntoView({ block: 'start', behavior: prefersMotion() ? 'smooth' : 'auto' });
    }

    function storyInputs() {
        return {
            genre: el.genre.value.trim(),
            characters: el.characters.value.trim(),
            opening_line: el['opening-line'].value.trim(),
        };
    }

    async function onStart(event) {
        event.preventDefault();
        if (el['start-btn'].disabled) return; // Ctrl+Enter while busy or cooling down
        clearMessage();
        const body = storyInputs();
        const missing = !body.genre ? el.genre : (!body.characters ? el.characters : null);
        if (missing) {
            missing.setAttribute('aria-invalid', 'true');
            showMessage('error', !body.genre ? 'Please give a genre (for example "fantasy").'
                : 'Please name the characters of your story.');
            focusNode(missing);
            return;
        }
        const button = el['start-btn'];
        await task({
            cls: 'ai', what: 'start', button, regions: [el.story, el['new-story-form']], note: el['start-writing'],
        }, async () => {
            const owned = Boolean(state.token);
            const story = await api('POST', '/start-story', { cls: 'ai', body });
            showStory(story, owned);
            announce(`Your story "${clip(story.title || 'Untitled', 80)}" has begun.`);
            focusStoryTop();
            if (owned) loadStories({ reset: true, quiet: true });
        });
    }

    // continueStory TEXT BUTTON: one POST /continue-story with TEXT as user_input.
    async function continueStory(text, button) {
        const story = state.story;
        if (!story) return;
        await task({
            cls: 'ai', what: 'continue', button, regions: [el.story], note: el['story-writing'],
        }, async () => {
            const next = await api('POST', '/continue-story', {
                cls: 'ai', body: { story_id: story.id, user_input: text },
            });
            if (!state.story || state.story.id !== story.id) return; // another story was opened meanwhile
            el['user-input'].value = '';
            updateCounter(el['user-input']);
            showStory(next, state.storyOwned);
            focusLastPart();
        });
    }

    function onContinue(event) {
        event.preventDefault();
        if (el['continue-btn'].disabled) return;
        continueStory(el['user-input'].value.trim(), el['continue-btn']);
    }

    async function onEnd() {
        const story = state.story;
        if (!story) return;
        await task({
            cls: 'ai', what: 'end', button: el['end-btn'], regions: [el.story], note: el['story-writing'],
        }, async () => {
            const ended = await api('POST', '/end-story', { cls: 'ai', body: { story_id: story.id } });
            if (!state.story || state.story.id !== story.id) return;
            showStory(ended, state.storyOwned);
            focusLastPart();
            if (state.storyOwned && state.token) loadStories({ reset: true, quiet: true });
        });
    }

    async function onSuggest() {
        const story = state.story;
        if (!story) return;
        await task({ cls: 'ai', what: 'suggest', button: el['suggest-btn'], regions: [el.story] }, async () => {
            const data = await api('GET', `/suggestions?story_id=${encodeURIComponent(story.id)}`, { cls: 'ai' });
            if (!state.story || state.story.id !== story.id) return;
            const list = data && Array.isArray(data.suggestions) ? data.suggestions.filter((s) => typeof s === 'string') : [];
            el.suggestions.replaceChildren(...list.map((text) => h('button', {
                type: 'button', class: 'choice', 'data-testid': 'suggestion', 'data-class': 'ai',
                'data-story': 'write', text,
                onclick: (e) => {
                    if (e.currentTarget.disabled) return;
                    continueStory(clip(text, 1000), e.currentTarget);
                },
            })));
            el['suggestions-box'].hidden = list.length === 0;
            updateButtons();
            focusNode(el.suggestions.querySelector('button') || el['suggest-btn']);
        });
    }

    async function onIdeas() {
        await task({ cls: 'ai', what: 'ideas', button: el['ideas-btn'], regions: [el['new-story-form']] }, async () => {
            const data = await api('GET', '/suggestions', { cls: 'ai' });
            const list = data && Array.isArray(data.suggestions) ? data.suggestions.filter((s) => typeof s === 'string') : [];
            el.ideas.replaceChildren(...list.map((text) => h('button', {
                type: 'button', class: 'choice', 'data-testid': 'idea', 'data-class': 'ai', text,
                onclick: () => useIdea(text),
            })));
            el['ideas-box'].hidden = list.length === 0;
            updateButtons();
            focusNode(el.ideas.querySelector('button') || el['ideas-btn']);
        });
    }

    // useIdea TEXT: "Fantasy: when a dragon ... " fills the genre and the opening line.
    function useIdea(text) {
        const m = text.match(/^\s*([^:]{1,50}):\s*([\s\S]+)$/);
        const premise = (m ? m[2] : text).trim();
        if (m) el.genre.value = clip(m[1].trim(), 50);
        el['opening-line'].value = clip(premise.charAt(0).toUpperCase() + premise.slice(1), 1000);
        [el.genre, el['opening-line']].forEach(updateCounter);
        announce('The idea is filled in. Add the characters, then start the story.');
        focusNode(el.characters.value.trim() ? el['start-btn'] : el.characters);
    }

    // ---------------------------------------------------------------------- library

    const dateFormat = (() => {
        try {
            return new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
        } catch (_) {
            return null;
        }
    })();

    function formatDate(iso) {
        const d = new Date(iso);
        if (Number.isNaN(d.getTime())) return '';
        return dateFormat ? dateFormat.format(d) : d.toISOString().slice(0, 16).replace('T', ' ');
    }

    function renderItem(story) {
        const title = story.title || 'Untitled story';
        const done = story.status === 'completed';
        const confirm = h('div', { class: 'confirm', hidden: true });
        const item = h('li', { class: 'story-item', 'data-testid': 'story-item', 'data-id': String(story.id) });
        const actions = h('div', { class: 'item-actions' },
            h('button', {
                type: 'button', class: 'btn btn--small', 'data-testid': 'open-story', 'data-class': 'api',
                onclick: (e) => openStory(String(story.id), e.currentTarget),
            }, 'Open', h('span', { class: 'visually-hidden', text: ` “${title}”` })),
            h('button', {
                type: 'button', class: 'btn btn--small btn--quiet', 'data-testid': 'delete-story', 'data-class': 'api',
                'aria-expanded': 'false',
                onclick: (e) => askDelete(item, confirm, e.currentTarget),
            }, 'Delete', h('span', { class: 'visually-hidden', text: ` “${title}”` })));
        confirm.append(
            h('p', { class: 'confirm-text' }, 'Delete ', h('strong', { text: title }), ' for good?'),
            h('div', { class: 'item-actions' },
                h('button', {
                    type: 'button', class: 'btn btn--small btn--danger', 'data-testid': 'confirm-delete',
                    'data-class': 'api', onclick: (e) => deleteStory(String(story.id), e.currentTarget),
                }, 'Yes, delete'),
                h('button', {
                    type: 'button', class: 'btn btn--small', 'data-testid': 'cancel-delete',
                    onclick: () => cancelDelete(item, confirm),
                }, 'Keep it')));
        const created = typeof story.created_at === 'string' ? story.created_at : '';
        item.append(
            h('h3', { class: 'item-title', text: title }),
            h('p', { class: 'item-meta' },
                h('span', { class: 'item-genre', text: story.genre || '' }),
                h('span', { class: `item-status item-status--${done ? 'completed' : 'open'}`, text: done ? 'completed' : 'in progress' }),
                created ? h('time', { datetime: created, text: formatDate(created) }) : null),
            actions, confirm);
        return item;
    }

    function markCurrentItem() {
        const id = state.story && state.storyOwned ? String(state.story.id) : null;
        for (const item of el['stories-list'].querySelectorAll('[data-testid="story-item"]')) {
            if (item.dataset.id === id) item.setAttribute('aria-current', 'true');
            else item.removeAttribute('aria-current');
        }
    }

    // loadStories {reset, quiet, button}: page 1 again (reset) or the next page.
    async function loadStories({ reset, quiet = false, button = null }) {
        if (!state.token) return;
        if (reset) state.list.seq += 1;
        const seq = state.list.seq;
        const cursor = reset ? null : state.list.cursor;
        let path = `/stories?limit=${PAGE_SIZE}`;
        if (cursor) path += `&cursor=${encodeURIComponent(cursor)}`;
        await task({ cls: 'api', what: 'list', button, regions: [el.library], quiet }, async () => {
            const data = await api('GET', path, { cls: 'api' });
            if (seq !== state.list.seq || !state.token) return; // a newer list or another session
            const stories = data && Array.isArray(data.stories) ? data.stories : [];
            if (reset) {
                el['stories-list'].replaceChildren();
                state.list.ids.clear();
            }
            const firstNew = [];
            for (const s of stories) {
                if (!s || state.list.ids.has(String(s.id))) continue;
                state.list.ids.add(String(s.id));
                const item = renderItem(s);
                firstNew.push(item);
                el['stories-list'].append(item);
            }
            state.list.cursor = data && typeof data.next_cursor === 'string' && data.next_cursor ? data.next_cursor : null;
            el['more-stories'].hidden = !state.list.cursor;
            el['stories-empty'].hidden = state.list.ids.size > 0;
            markCurrentItem();
            updateButtons();
            if (!reset && button) {
                // "More": the focus goes to the first story of the new page.
                const target = firstNew.length ? firstNew[0].querySelector('[data-testid="open-story"]') : null;
                if (target) focusNode(target);
                announce(`${firstNew.length} more ${firstNew.length === 1 ? 'story' : 'stories'} listed.`);
            }
        });
    }

    async function openStory(id, button) {
        await task({ cls: 'api', what: 'open', button, storyId: id, regions: [el.story] }, async () => {
            const story = await api('GET', `/stories/${encodeURIComponent(id)}`, { cls: 'api' });
            showStory(story, true);
            focusStoryTop();
        });
    }

    function askDelete(item, confirm, button) {
        for (const other of el['stories-list'].querySelectorAll('.confirm:not([hidden])')) {
            const otherItem = other.closest('[data-testid="story-item"]');
            if (otherItem !== item) cancelDelete(otherItem, other, false);
        }
        confirm.hidden = false;
        button.setAttribute('aria-expanded', 'true');
        item.classList.add('is-confirming');
        confirm.querySelector('[data-testid="cancel-delete"]').focus();
    }

    function cancelDelete(item, confirm, refocus = true) {
        confirm.hidden = true;
        item.classList.remove('is-confirming');
        const del = item.querySelector('[data-testid="delete-story"]');
        del.setAttribute('aria-expanded', 'false');
        if (refocus) del.focus();
    }

    function removeItem(id) {
        const item = el['stories-list'].querySelector(`[data-testid="story-item"][data-id="${CSS.escape(id)}"]`);
        if (item) item.remove();
        state.list.ids.delete(id);
        el['stories-empty'].hidden = state.list.ids.size > 0 || !el['more-stories'].hidden;
        if (state.story && state.storyOwned && String(state.story.id) === id) closeStory();
    }

    async function deleteStory(id, button) {
        await task({ cls: 'api', what: 'delete', button, storyId: id, regions: [el.library] }, async () => {
            await api('DELETE', `/stories/${encodeURIComponent(id)}`, { cls: 'api' });
            removeItem(id);
            showMessage('info', 'The story was deleted.');
            focusNode(el['library-heading']);
            loadStories({ reset: true, quiet: true });
        });
    }

    // --------------------------------------------------------------------- counters

    function updateCounter(input) {
        const out = document.querySelector(`.counter[data-for="${input.id}"]`);
        if (!out) return;
        const max = Number(out.dataset.max) || 0;
        const n = charCount(input.value);
        out.textContent = max ? `${n} / ${max}` : String(n);
        out.dataset.level = max && n >= max ? 'full' : (max && n >= max * 0.9 ? 'near' : '');
    }

    // ------------------------------------------------------------------------ start

    function restoreStory() {
        const raw = storageGet(KEY.story);
        if (!raw) return;
        try {
            const saved = JSON.parse(raw);
            const story = saved && saved.story;
            if (!story || typeof story.id !== 'string' || !Array.isArray(story.parts)) throw new Error('bad');
            if (saved.owned && !state.token) throw new Error('belongs to a closed session');
            showStory(story, Boolean(saved.owned));
        } catch (_) {
            storageSet(KEY.story, null);
        }
    }

    function init() {
        const token = storageGet(KEY.token);
        if (token && !jwtExpired(token)) {
            state.token = token;
            state.email = storageGet(KEY.email) || '';
        } else if (token) {
            storageSet(KEY.token, null);
            storageSet(KEY.email, null);
            storageSet(KEY.story, null);
            showMessage('info', 'Your session has expired. Please log in again.');
        }
        renderAccount();
        restoreStory();

        el['auth-form'].addEventListener('submit', onAuthSubmit);
        el['logout-btn'].addEventListener('click', () => logout());
        el['new-story-form'].addEventListener('submit', onStart);
        el['ideas-btn'].addEventListener('click', onIdeas);
        el['continue-form'].addEventListener('submit', onContinue);
        el['suggest-btn'].addEventListener('click', onSuggest);
        el['end-btn'].addEventListener('click', onEnd);
        el['another-btn'].addEventListener('click', () => focusNode(el.genre));
        el['refresh-stories'].addEventListener('click', (e) => loadStories({ reset: true, button: e.currentTarget }));
        el['more-stories'].addEventListener('click', (e) => loadStories({ reset: false, button: e.currentTarget }));
        el['message-close'].addEventListener('click', () => {
            clearMessage();
            focusNode($('main'));
        });

        for (const input of document.querySelectorAll('input[maxlength], textarea[maxlength]')) {
            const out = document.querySelector(`.counter[data-for="${input.id}"]`);
            if (out) out.dataset.max = input.getAttribute('maxlength');
            input.addEventListener('input', () => {
                updateCounter(input);
                input.removeAttribute('aria-invalid');
            });
            updateCounter(input);
        }
        // Ctrl+Enter (Cmd+Enter) in a text area sends its form, as in most chat boxes.
        for (const area of document.querySelectorAll('textarea')) {
            area.addEventListener('keydown', (e) => {
                if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && area.form) {
                    e.preventDefault();
                    area.form.requestSubmit();
                }
            });
        }

        updateButtons();
        if (state.token) {
            checkSession();
            loadStories({ reset: true, quiet: true });
        }
    }

    init();
})();
