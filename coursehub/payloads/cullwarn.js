// coursehub-cullwarn: JupyterLab warns a student before the hub's idle culler stops their server.
//
// Written by hand, with no build step: JupyterLab 4 loads a prebuilt ("federated") extension by
// running the script its package.json names (jupyterlab._build.load) and reading the module-federation
// container it leaves at window._JUPYTERLAB[<name>]: init(shareScope), then get('./extension') resolving
// to a factory of a module whose default export is the plugin. Webpack writes exactly that, plus the
// machinery for shared modules; this plugin imports none (only the DOM and fetch), so the container is
// the few lines below, and there is no toolchain to install nor generated bundle to keep in sync.
// coursehub copies this file into every environment (courses/environments.py).
//
// The server's coursehub_activity extension answers GET <base>/coursehub/activity with the time left
// before the culler may stop the server, computed from the hub's last activity of the server and the
// culler's timeout; that request is never activity. A key press or click in JupyterLab is (a POST).
(function () {
  'use strict';

  var NAME = 'coursehub-cullwarn';
  var BANNER_ID = 'coursehub-cull-warning';

  function pageConfig() {
    var el = document.getElementById('jupyter-config-data');
    return el ? JSON.parse(el.textContent || '{}') : {};
  }

  function cookie(name) {
    var match = document.cookie.match('(?:^|;)\\s*' + name + '=([^;]*)');
    return match ? decodeURIComponent(match[1]) : '';
  }

  function minutes(seconds) {
    if (seconds <= 0) {
      return 'any moment now';
    }
    if (seconds < 60) {
      return 'in less than a minute';
    }
    var count = Math.round(seconds / 60);
    return 'in about ' + count + (count === 1 ? ' minute' : ' minutes');
  }

  function clock(iso) {
    var when = new Date(iso);
    return when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function start() {
    var config = pageConfig();
    var base = (config.baseUrl || '/').replace(/\/?$/, '/');
    var url = base + 'coursehub/activity';
    var banner = null;
    var state = null;
    var received = 0;
    var timer = null;
    var lastPost = 0;

    function headers() {
      var h = { 'X-XSRFToken': cookie('_xsrf') };
      if (config.token) {
        h.Authorization = 'token ' + config.token;
      }
      return h;
    }

    function show(text) {
      if (!banner) {
        banner = document.createElement('div');
        banner.id = BANNER_ID;
        banner.setAttribute('role', 'alert');
        banner.style.cssText =
          'position:fixed;bottom:36px;left:50%;transform:translateX(-50%);z-index:10000;max-width:46em;' +
          'padding:10px 16px;border-radius:6px;border:1px solid #b58900;background:#fff4ce;color:#3b2f00;' +
          'font:14px/1.4 system-ui,sans-serif;box-shadow:0 2px 8px rgba(0,0,0,.25)';
        // Above the status bar: the menus and toolbars stay usable while it shows.
        document.body.appendChild(banner);
      }
      banner.textContent = text;
    }

    function hide() {
      if (banner) {
        banner.remove();
        banner = null;
      }
    }

    function render() {
      if (!state || !state.warn) {
        hide();
        return;
      }
      var left = Math.max(0, state.seconds_left - Math.round((Date.now() - received) / 1000));
      var what = state.deletes_files
        ? 'This temporary session will be deleted for inactivity ' + minutes(left) + ' (at ' + clock(state.stop_at) + '), with its files: download what you want to keep.'
        : 'This server will be stopped for inactivity ' + minutes(left) + ' (at ' + clock(state.stop_at) + '). Your saved files are kept.';
      show(what + ' Any activity (running a cell, saving, typing in a notebook) keeps it running.');
    }

    function stopped() {
      if (state && state.warn) {
        var guest = state.deletes_files;
        state = null;
        show(
          guest
            ? 'This temporary session ended for inactivity, and its files were deleted.'
            : 'This server was stopped for inactivity. Your saved files are kept: open the course again from the hub to continue.'
        );
      }
    }

    function schedule(seconds) {
      clearTimeout(timer);
      timer = setTimeout(ask, seconds * 1000);
    }

    function ask(method) {
      // redirect: 'manual': once the server is gone the proxy sends its address to the hub.
      // A deadline: a request caught by the server's stop (its namespace gone mid-connection) could
      // otherwise hang for the kernel's connect timeout, minutes in which the banner says nothing.
      var deadline = new AbortController();
      var abort = setTimeout(function () { deadline.abort(); }, 20000);
      return fetch(url, { method: method || 'GET', headers: headers(), credentials: 'same-origin', cache: 'no-store', redirect: 'manual', signal: deadline.signal })
        .finally(function () { clearTimeout(abort); })
        .then(function (response) {
          if (!response.ok) {
            throw new Error('HTTP ' + response.status);
          }
          return response.json();
        })
        .then(function (answer) {
          state = answer;
          received = Date.now();
          render();
          schedule(answer.poll_seconds || 60);
        })
        .catch(function () {
          stopped();
          schedule(60);
        });
    }

    // The student is here: a key press or click counts as activity, at most twice a minute unless
    // the warning shows (then at once, so that it goes away).
    function here() {
      var now = Date.now();
      if ((state && state.warn) || now - lastPost > 30000) {
        lastPost = now;
        ask('POST');
      }
    }

    document.addEventListener('keydown', here, true);
    document.addEventListener('pointerdown', here, true);
    setInterval(render, 1000);
    ask();
  }

  var plugin = {
    id: NAME + ':plugin',
    description: 'Warns before the hub stops an idle server.',
    autoStart: true,
    requires: [],
    activate: function () {
      start();
    }
  };

  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB[NAME] = {
    init: function () {
      return Promise.resolve();
    },
    get: function (module) {
      if (module !== './extension') {
        return Promise.reject(new Error(NAME + ' has no module ' + module));
      }
      return Promise.resolve(function () {
        return { __esModule: true, default: plugin };
      });
    }
  };
})();
