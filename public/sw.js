// FaceGate's service worker. `cargo xtask site` fills in BUILD and the list
// of content-hashed bundles, so each build gets a cache of its own.
const BUILD = "__FACEGATE_BUILD__";
const BUNDLES = __FACEGATE_BUNDLES__;
const CACHE = `facegate-${BUILD}`;
const SHELL = ["/", "/offline.html", "/manifest.webmanifest",
  "/icons/icon-192.png", "/icons/icon-512.png", "/icons/icon-maskable-512.png"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll([...SHELL, ...BUNDLES])));
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("facegate-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  // Server functions, the JSON API and anything not ours always go to the network.
  if (request.method !== "GET" || url.origin !== self.location.origin || url.pathname.startsWith("/api/")) {
    return;
  }
  if (request.mode === "navigate") {
    event.respondWith(
      fetch(request).catch(async () => (await caches.match(url.pathname === "/" ? "/" : "/offline.html"))
        ?? (await caches.match("/offline.html"))),
    );
    return;
  }
  // Hashed bundles never change; icons and the manifest rarely do.
  event.respondWith(caches.match(request).then((hit) => hit ?? fetch(request)));
});
