import { defineConfig } from "@playwright/test";
import * as os from "node:os";
import * as path from "node:path";
import * as fs from "node:fs";
import { execFileSync } from "node:child_process";

// The browser is Debian's Chromium: Playwright never downloads its own here.
export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const chromiumArgs = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
const port = Number(process.env.FACEGATE_E2E_PORT ?? 3917);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "facegate-e2e-"));
// The test server's store holds enrolled photos: it goes when the run ends.
process.on("exit", () => fs.rmSync(dataDir, { recursive: true, force: true }));
const repo = path.resolve(__dirname, "..");
const binary = process.env.FACEGATE_BIN ?? path.join(repo, "target/release/facegate");

export const baseURL = `http://127.0.0.1:${port}`;

// The admin password of the test server; only its hash reaches the server.
export const adminPassword = "e2e-admin-password";
const adminHash = execFileSync(binary, ["hash-password"], { input: `${adminPassword}\n` }).toString().trim();

export default defineConfig({
  testDir: "./tests",
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  outputDir: path.join(os.tmpdir(), "facegate-e2e-results"),
  use: {
    baseURL,
    launchOptions: { executablePath: chromiumPath, args: chromiumArgs },
  },
  webServer: {
    command: `${binary} serve --addr 127.0.0.1:${port} --site-root ${path.join(repo, "target/site")}`,
    url: `${baseURL}/api/v1/health`,
    timeout: 120_000,
    reuseExistingServer: false,
    stdout: "pipe",
    stderr: "pipe",
    env: { FACEGATE_DATA_DIR: dataDir, FACEGATE_ADMIN_PASSWORD_HASH: adminHash, RUST_LOG: "info" },
  },
});
