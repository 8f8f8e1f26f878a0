/* Passkeys (WebAuthn) for the sign-in and account security pages. No inline script: the CSP forbids it.
   Buttons carry data-passkey="signin" or "register", the URLs to call, and what to say on the status line in
   the page's language (data-say-*: the script holds no words of its own); the anti-forgery token is in
   <meta name="csrf-token"> and goes in the X-CSRF-Token header. The server's refusals come in the page's
   language too. */
(function () {
  "use strict";

  function fromB64url(text) {
    var s = text.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function token() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function words(button, key) {
    return button.getAttribute("data-say-" + key) || "";
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token() },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) { throw new Error(data.message || ""); }
        return data;
      });
    });
  }

  function say(button, text) {
    var target = document.getElementById(button.getAttribute("data-status"));
    if (target) { target.textContent = text; }
  }

  function explain(button, error) {
    if (error && error.name === "NotAllowedError") { return words(button, "cancelled"); }
    if (error && error.name === "InvalidStateError") { return words(button, "duplicate"); }
    return (error && error.message) || words(button, "failed");
  }

  function signIn(button) {
    say(button, words(button, "working"));
    post(button.getAttribute("data-options-url")).then(function (options) {
      options.challenge = fromB64url(options.challenge);
      (options.allowCredentials || []).forEach(function (c) { c.id = fromB64url(c.id); });
      return navigator.credentials.get({ publicKey: options });
    }).then(function (credential) {
      var r = credential.response;
      return post(button.getAttribute("data-finish-url"), {
        next: button.getAttribute("data-next") || "",
        credential: {
          id: credential.id,
          rawId: toB64url(credential.rawId),
          type: credential.type,
          authenticatorAttachment: credential.authenticatorAttachment || null,
          clientExtensionResults: credential.getClientExtensionResults(),
          response: {
            clientDataJSON: toB64url(r.clientDataJSON),
            authenticatorData: toB64url(r.authenticatorData),
            signature: toB64url(r.signature),
            userHandle: r.userHandle ? toB64url(r.userHandle) : null
          }
        }
      });
    }).then(function (result) {
      say(button, words(button, "done"));
      window.location.assign(result.redirect);
    }).catch(function (error) { say(button, explain(button, error)); });
  }

  function register(button) {
    var field = document.getElementById(button.getAttribute("data-name-field"));
    say(button, words(button, "working"));
    post(button.getAttribute("data-options-url")).then(function (options) {
      options.challenge = fromB64url(options.challenge);
      options.user.id = fromB64url(options.user.id);
      (options.excludeCredentials || []).forEach(function (c) { c.id = fromB64url(c.id); });
      return navigator.credentials.create({ publicKey: options });
    }).then(function (credential) {
      var r = credential.response;
      return post(button.getAttribute("data-finish-url"), {
        name: field ? field.value : "",
        credential: {
          id: credential.id,
          rawId: toB64url(credential.rawId),
          type: credential.type,
          authenticatorAttachment: credential.authenticatorAttachment || null,
          clientExtensionResults: credential.getClientExtensionResults(),
          response: {
            clientDataJSON: toB64url(r.clientDataJSON),
            attestationObject: toB64url(r.attestationObject),
            transports: r.getTransports ? r.getTransports() : []
          }
        }
      });
    }).then(function (result) {
      say(button, words(button, "done"));
      window.location.assign(result.redirect);
    }).catch(function (error) { say(button, explain(button, error)); });
  }

  var supported = !!(window.PublicKeyCredential && navigator.credentials);
  document.querySelectorAll("[data-passkey]").forEach(function (button) {
    if (!supported) {
      say(button, words(button, "unsupported"));
      button.disabled = true;
      return;
    }
    button.addEventListener("click", function () {
      if (button.getAttribute("data-passkey") === "signin") { signIn(button); } else { register(button); }
    });
  });
})();
