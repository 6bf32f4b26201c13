/* Waypoint web chat. No framework, no third party, no cookies: the conversation
 * lives only in this tab's sessionStorage. Every text, the user's and the
 * bot's, is put on the page with textContent / createTextNode, never as HTML. */
(function () {
  'use strict';

  var KEY = 'waypoint-chat';
  // The languages come from the server (i18n.js, made from data/languages.yml).
  var LISTED = window.WAYPOINT_LANGUAGES || [{code: 'en', name: 'English'}];
  var LANGUAGES = LISTED.map(function (l) { return l.code; });
  var NATIVE = {};
  LISTED.forEach(function (l) { NATIVE[l.code] = l.name; });
  var DEFAULT_LANGUAGE = LANGUAGES[0];
  var WEBHOOK = '/webhooks/webchat/webhook';
  var DELETE = '/webhooks/webchat/delete';
  var POLL = '/webhooks/webchat/poll';
  var POLL_MS = 3000;
  var ESC_WINDOW_MS = 1500;
  var MAX_KEPT = 300;

  var root = document.documentElement;
  var EXIT_URL = root.getAttribute('data-exit-url') || 'https://www.google.com/search?q=weather';
  var WORDS = window.WAYPOINT_I18N || {};

  var $ = function (id) { return document.getElementById(id); };
  var log = $('log'), input = $('message'), form = $('composer'), picker = $('language');
  LISTED.forEach(function (l) {
    var option = document.createElement('option');
    option.value = l.code;
    option.setAttribute('lang', l.code);
    option.textContent = l.name;
    picker.appendChild(option);
  });
  var notice = $('notice'), writing = $('writing');
  var deleteButton = $('delete'), confirmBox = $('confirm');
  var handoffBox = $('handoff'), handoffStatus = $('handoff-status'), handoffButton = $('handoff-action');

  var state = load();
  var busy = false;
  var lastEscape = 0;
  var pollTimer = null;
  var handoffEpoch = 0;  // bumped by every answer to a message: an older poll's state is stale

  // -- storage ----------------------------------------------------------------

  function newSession() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }

  function load() {
    var saved = null;
    try { saved = JSON.parse(window.sessionStorage.getItem(KEY) || 'null'); } catch (e) { saved = null; }
    if (!saved || typeof saved.session !== 'string' || !Array.isArray(saved.messages)) {
      saved = {session: newSession(), lang: initialLanguage(), messages: []};
    }
    if (LANGUAGES.indexOf(saved.lang) < 0) saved.lang = DEFAULT_LANGUAGE;
    return saved;
  }

  function save() {
    state.messages = state.messages.slice(-MAX_KEPT);
    try { window.sessionStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { /* storage full or off */ }
  }

  function initialLanguage() {
    var asked = new URLSearchParams(window.location.search).get('lang');
    var wanted = [asked].concat(navigator.languages || [navigator.language]);
    for (var i = 0; i < wanted.length; i++) {
      var code = String(wanted[i] || '').toLowerCase().split(/[-_]/)[0];
      if (LANGUAGES.indexOf(code) >= 0) return code;
    }
    return DEFAULT_LANGUAGE;
  }

  // -- words ------------------------------------------------------------------

  function t(key) {
    return (WORDS[state.lang] && WORDS[state.lang][key]) || (WORDS[DEFAULT_LANGUAGE] && WORDS[DEFAULT_LANGUAGE][key]) || '';
  }

  function applyLanguage() {
    root.setAttribute('lang', state.lang);
    picker.value = state.lang;
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n]'), function (el) {
      var text = t(el.getAttribute('data-i18n'));
      if (text) el.textContent = text;
    });
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n-placeholder]'), function (el) {
      var text = t(el.getAttribute('data-i18n-placeholder'));
      if (text) el.setAttribute('placeholder', text);
    });
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n-label]'), function (el) {
      var text = t(el.getAttribute('data-i18n-label'));
      if (text) el.setAttribute('aria-label', text);
    });
    Array.prototype.forEach.call(log.querySelectorAll('.who-you'), function (el) { el.textContent = t('you') + ': '; });
    showHandoff();
  }

  // -- rendering (text only) --------------------------------------------------

  // A web address, a number after the phone sign, or an international number.
  var LINKS = /(https?:\/\/[^\s<>"]+)|(☎\uFE0F?[ \u00A0]*)(\+?\(?\d[\d \u00A0().\-]*\d)|(?<![\w+\/.])(\+\d[\d \u00A0().\-]{6,}\d)/gu;

  function telLink(number, scheme) {
    var digits = number.replace(/[^\d+]/g, '');
    var count = digits.replace(/\D/g, '').length;
    if (count < 3 || count > 15) return document.createTextNode(number);
    var a = document.createElement('a');
    a.href = (scheme || 'tel') + ':' + digits;
    a.className = 'tel';
    a.textContent = number;
    return a;
  }

  function appendRichText(parent, text) {
    var last = 0, match;
    LINKS.lastIndex = 0;
    while ((match = LINKS.exec(text)) !== null) {
      parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      if (match[1]) {
        var url = match[1].replace(/[.,;:!?)\]]+$/, '');
        var a = document.createElement('a');
        a.href = url;
        a.rel = 'noopener noreferrer';
        a.target = '_blank';
        a.textContent = url;
        parent.appendChild(a);
        parent.appendChild(document.createTextNode(match[1].slice(url.length)));
      } else if (match[3]) {
        parent.appendChild(document.createTextNode(match[2]));
        parent.appendChild(telLink(match[3]));
      } else {  // after "SMS" the number is for texting
        parent.appendChild(telLink(match[4], /SMS[ \u00A0]*$/.test(text.slice(0, match.index)) ? 'sms' : 'tel'));
      }
      last = match.index + match[0].length;
    }
    parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function render(item) {
    var box = document.createElement('div');
    box.className = 'message ' + (item.who === 'user' ? 'from-user' : 'from-bot');
    var who = document.createElement('span');
    who.className = 'visually-hidden ' + (item.who === 'user' ? 'who-you' : 'who-bot');
    who.textContent = (item.who === 'user' ? t('you') : 'Waypoint') + ': ';
    box.appendChild(who);
    if (item.text) {
      var body = document.createElement('p');
      body.className = 'text';
      if (item.who === 'user') body.textContent = item.text;
      else appendRichText(body, item.text);
      box.appendChild(body);
    }
    if (item.buttons && item.buttons.length) {
      var group = document.createElement('div');
      group.className = 'choices';
      group.setAttribute('role', 'group');
      item.buttons.forEach(function (b) {
        var button = document.createElement('button');
        button.type = 'button';
        button.className = 'choice';
        button.textContent = String(b.title || b.payload);
        button.addEventListener('click', function () { send(String(b.payload), String(b.title || b.payload)); });
        group.appendChild(button);
      });
      box.appendChild(group);
    }
    log.appendChild(box);
    return box;
  }

  function add(item) {
    state.messages.push(item);
    save();
    return render(item);
  }

  function say(text) {
    notice.textContent = '';
    if (text) notice.textContent = text;
  }

  // -- talking to the server --------------------------------------------------

  function post(url, body, extra) {
    var options = {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store'
    };
    if (extra) Object.keys(extra).forEach(function (k) { options[k] = extra[k]; });
    return window.fetch(url, options).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (data) {
        return {status: response.status, data: data};
      });
    });
  }

  function send(text, shown) {
    if (busy || !text) return false;
    busy = true;
    say('');
    add({who: 'user', text: shown || text});
    writing.hidden = false;
    log.setAttribute('aria-busy', 'true');
    var first = null;
    post(WEBHOOK, {sender: state.session, message: text, metadata: {language_hint: state.lang}})
      .then(function (result) {
        if (!Array.isArray(result.data)) { say(t('offline')); return; }
        result.data.forEach(function (m) {
          if (m && Object.prototype.hasOwnProperty.call(m, 'handoff')) { handoffEpoch++; setHandoff(m.handoff); return; }
          if (!m || (!m.text && !(m.buttons && m.buttons.length))) return;
          var box = add({who: 'bot', text: typeof m.text === 'string' ? m.text : '', buttons: m.buttons || []});
          if (!first) first = box;
        });
      })
      .catch(function () {
        say(t('offline'));
        if (!input.value && !shown) input.value = text;
      })
      .then(function () {
        busy = false;
        writing.hidden = true;
        log.removeAttribute('aria-busy');
        if (first) first.scrollIntoView({block: 'start'});
        else log.scrollTop = log.scrollHeight;
      });
    return true;
  }

  // -- a counsellor (hand-off): polled only while one is waiting or live -------

  function setHandoff(value) {
    var next = (value === 'waiting' || value === 'live') ? value : null;
    state.handoff = next;
    save();
    showHandoff();
    if (next) schedulePoll();
    else stopPolling();
  }

  function showHandoff() {
    if (!handoffBox) return;
    handoffBox.hidden = !state.handoff;
    if (!state.handoff) return;
    handoffStatus.textContent = t(state.handoff === 'live' ? 'handoff_live' : 'handoff_waiting');
    handoffButton.textContent = t(state.handoff === 'live' ? 'end_chat' : 'cancel_request');
  }

  function schedulePoll() {
    if (pollTimer === null) pollTimer = window.setTimeout(poll, POLL_MS);
  }

  function stopPolling() {
    if (pollTimer !== null) window.clearTimeout(pollTimer);
    pollTimer = null;
  }

  function poll() {
    pollTimer = null;
    if (!state.handoff) return;
    var session = state.session, asked = handoffEpoch;
    post(POLL, {sender: session})
      .then(function (result) {
        if (session !== state.session || !result.data || typeof result.data !== 'object') return;
        var added = null;
        (result.data.messages || []).forEach(function (m) {
          if (!m || (!m.text && !(m.buttons && m.buttons.length))) return;
          var box = add({who: 'bot', text: typeof m.text === 'string' ? m.text : '', buttons: m.buttons || []});
          if (!added) added = box;
        });
        if (added) log.scrollTop = log.scrollHeight;
        if (result.status === 200 && asked === handoffEpoch) setHandoff(result.data.handoff);
      })
      .catch(function () { /* offline for a moment: try again */ })
      .then(function () { if (state.handoff) schedulePoll(); });
  }

  if (handoffButton) {
    handoffButton.addEventListener('click', function () {
      if (state.handoff === 'live') send('/end', t('end_chat'));
      else if (state.handoff === 'waiting') send('/cancel', t('cancel_request'));
    });
  }

  function clearPage() {
    Array.prototype.slice.call(log.querySelectorAll('.message')).forEach(function (el) { el.remove(); });
    input.value = '';
    say('');
  }

  // -- quick exit ------------------------------------------------------------

  function quickExit(event) {
    if (event) event.preventDefault();
    var session = state.session;
    stopPolling();
    try { window.sessionStorage.removeItem(KEY); window.sessionStorage.clear(); } catch (e) { /* ignore */ }
    state = {session: newSession(), lang: state.lang, messages: []};
    try { document.body.replaceChildren(); } catch (e) { document.body.textContent = ''; }
    try {
      // Best effort: the conversation cannot be reached again, so it is deleted on the server too.
      post(DELETE, {sender: session}, {keepalive: true}).catch(function () {});
    } catch (e) { /* ignore */ }
    var target = window;
    try { if (window.top !== window.self) target = window.top; } catch (e) { target = window; }
    try { target.location.replace(EXIT_URL); } catch (e) { window.location.replace(EXIT_URL); }
  }

  // -- wiring -----------------------------------------------------------------

  $('quick-exit').addEventListener('click', quickExit);
  document.addEventListener('keydown', function (event) {
    if (event.key !== 'Escape') return;
    var now = Date.now();
    if (now - lastEscape < ESC_WINDOW_MS) quickExit(event);
    else lastEscape = now;
  });

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (text && send(text)) input.value = '';
    input.focus();
  });
  input.addEventListener('keydown', function (event) {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event('submit', {cancelable: true}));
    }
  });

  picker.addEventListener('change', function () {
    var lang = picker.value;
    if (LANGUAGES.indexOf(lang) < 0 || lang === state.lang) return;
    state.lang = lang;
    save();
    applyLanguage();
    send('/choose_language{"language_choice":"' + lang + '"}', NATIVE[lang]);
  });

  function closeConfirm() {
    confirmBox.hidden = true;
    deleteButton.setAttribute('aria-expanded', 'false');
  }
  deleteButton.addEventListener('click', function () {
    var open = confirmBox.hidden;
    confirmBox.hidden = !open;
    deleteButton.setAttribute('aria-expanded', String(open));
    if (open) $('delete-yes').focus();
  });
  $('delete-no').addEventListener('click', function () { closeConfirm(); deleteButton.focus(); });
  $('delete-yes').addEventListener('click', function () {
    post(DELETE, {sender: state.session}).then(function (result) {
      if (result.status !== 200) throw new Error('not deleted');
      stopPolling();
      state = {session: newSession(), lang: state.lang, messages: []};
      try { window.sessionStorage.removeItem(KEY); } catch (e) { /* ignore */ }
      save();
      clearPage();
      showHandoff();
      closeConfirm();
      say(t('deleted'));
      input.focus();
    }).catch(function () {
      closeConfirm();
      say(t('delete_failed'));
    });
  });

  applyLanguage();
  state.messages.forEach(render);
  save();
  if (state.messages.length) log.scrollTop = log.scrollHeight;
  if (state.handoff) { showHandoff(); poll(); }  // reloaded during a hand-off: catch up at once
}());
