// FaceGate as an installable app: manifest, service worker, Chromium's own
// installability verdict, and what the page says when the server is out of reach.
import { chromium, expect, test } from "@playwright/test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { baseURL, chromiumArgs, chromiumPath, hydrated } from "../support/facegate";

type Icon = { src: string; sizes: string; type: string; purpose?: string };

test("the manifest, its icons and the service worker are served", async ({ request }) => {
  const manifestResponse = await request.get("/manifest.webmanifest");
  expect(manifestResponse.status()).toBe(200);
  expect(manifestResponse.headers()["content-type"]).toMatch(/^application\/manifest\+json/);
  const manifest = await manifestResponse.json();
  expect(manifest.name).toBeTruthy();
  expect(manifest.short_name).toBeTruthy();
  expect(manifest.display).toBe("standalone");
  expect(manifest.start_url).toBe("/");
  const icons: Icon[] = manifest.icons;
  expect(icons.map((icon) => icon.sizes)).toEqual(expect.arrayContaining(["192x192", "512x512"]));

  for (const icon of icons) {
    const response = await request.get(icon.src);
    expect(response.status(), icon.src).toBe(200);
    expect(response.headers()["content-type"], icon.src).toBe(icon.type);
    // A PNG's width and height sit at bytes 16-23 of its header chunk.
    const png = await response.body();
    const [width, height] = [png.readUInt32BE(16), png.readUInt32BE(20)];
    expect(`${width}x${height}`, icon.src).toBe(icon.sizes);
  }

  const worker = await request.get("/sw.js");
  expect(worker.status()).toBe(200);
  expect(worker.headers()["content-type"]).toMatch(/^(text|application)\/javascript/);
  const source = await worker.text();
  expect(source).toContain('addEventListener("fetch"');
  // `cargo xtask site` filled in the build and the list of bundles.
  expect(source).not.toContain("__FACEGATE_");
  expect(source).toMatch(/\/pkg\/facegate\.[0-9a-f]+\.wasm/);
  expect(source).toMatch(/\/pkg\/facegate-checkin\.[0-9a-f]+\.wasm/);

  const offline = await request.get("/offline.html");
  expect(offline.status()).toBe(200);
  expect(offline.headers()["content-type"]).toMatch(/^text\/html/);
  expect(await offline.text()).toContain("<h1>Offline</h1>");

  const home = await (await request.get("/")).text();
  expect(home).toContain('<link rel="manifest" href="/manifest.webmanifest"');
});

test("Chromium judges the app installable, and offline the page says so", async () => {
  // A persistent context: installability and service workers need a real profile.
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "facegate-e2e-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    args: chromiumArgs,
    baseURL,
  });
  // The camera answers only when the test says so, as a slow one does: its
  // late refusal must not hide that the network went away meanwhile.
  await context.addInitScript(() => {
    const devices = navigator.mediaDevices;
    if (!devices) return;
    const real = devices.getUserMedia.bind(devices);
    const w = window as unknown as { releaseCamera?: () => void; cameraSettled?: boolean };
    const released = new Promise<void>((resolve) => (w.releaseCamera = resolve));
    devices.getUserMedia = async (constraints) => {
      await released;
      try {
        return await real(constraints);
      } finally {
        w.cameraSettled = true;
      }
    };
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    await page.goto("/");
    await hydrated(page);
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null);

    const cdp = await context.newCDPSession(page);
    const { errors: manifestErrors } = await cdp.send("Page.getAppManifest");
    expect(manifestErrors).toEqual([]);
    const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
    expect(installabilityErrors).toEqual([]);

    // The network goes away while the page is open.
    await context.setOffline(true);
    await expect(page.locator("#checkin-status")).toContainText("Offline");
    await page.evaluate(() => (window as unknown as { releaseCamera: () => void }).releaseCamera());
    await page.waitForFunction(() => (window as unknown as { cameraSettled?: boolean }).cameraSettled);
    await expect(page.locator("#checkin-status")).toContainText("Offline");

    // A reload comes from the service worker's cache, hydrates, and still knows.
    const reloaded = await page.reload();
    expect(reloaded?.fromServiceWorker()).toBe(true);
    await hydrated(page);
    await expect(page.locator("#checkin-status")).toContainText("Offline");

    // Any other page gets the offline page.
    const elsewhere = await page.goto("/admin/log");
    expect(elsewhere?.fromServiceWorker()).toBe(true);
    await expect(page.getByRole("heading", { name: "Offline" })).toBeVisible();

    // Back online, the check-in page no longer says it is offline.
    await context.setOffline(false);
    await page.goto("/");
    await hydrated(page);
    await page.evaluate(() => (window as unknown as { releaseCamera: () => void }).releaseCamera());
    await expect(page.locator("#checkin-status")).not.toContainText("Connecting");
    await expect(page.locator("#checkin-status")).not.toContainText("Offline");

    // The network is up but the server does not answer (stopped): the page
    // says it is offline, asks again, and notices when the server is back.
    await page.route("**/api/**", (route) => route.abort("connectionrefused"));
    await page.reload();
    await hydrated(page);
    await expect(page.locator("#checkin-status")).toContainText("Offline");
    await page.unroute("**/api/**");
    await expect(page.locator("#checkin-status")).not.toContainText("Offline");
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
});
