// What FaceGate's browser tests share: the photo set, the fake camera, the
// admin login and a fixture that launches Chromium with a camera file.
import {
  test as base,
  chromium,
  expect,
  type APIRequestContext,
  type Browser,
  type BrowserContext,
  type BrowserContextOptions,
  type Page,
} from "@playwright/test";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { adminPassword, baseURL, chromiumArgs, chromiumPath } from "../playwright.config";

export { adminPassword, baseURL, chromiumArgs, chromiumPath };

// The five-person photo set that `models/prepare.py` fetches with the models.
const cacheDir = process.env.FACEGATE_CACHE_DIR ?? path.join(os.homedir(), ".cache/facegate");
const faces = path.join(cacheDir, "data/faces5");

/** A photo of the set, e.g. `photo("val", "madonna", "httpcdn...jpg")`; fails if it is missing. */
export function photo(split: "train" | "val", person: string, file: string): string {
  const location = path.join(faces, split, person, file);
  if (!fs.existsSync(location)) {
    throw new Error(`${location} is missing: run \`python3 models/prepare.py\` to fetch the photo set`);
  }
  return location;
}

/** The first `count` training photos of `person`, in name order. */
export function trainPhotos(person: string, count: number): string[] {
  const folder = path.join(faces, "train", person);
  if (!fs.existsSync(folder)) {
    throw new Error(`${folder} is missing: run \`python3 models/prepare.py\` to fetch the photo set`);
  }
  return fs
    .readdirSync(folder)
    .sort()
    .slice(0, count)
    .map((file) => path.join(folder, file));
}

/** The person the tests enrol, and the photos that stand in front of the fake camera. */
export const enrolled = {
  name: "Jerry Seinfeld",
  folder: "jerry_seinfeld",
  // A validation photo (never enrolled) with one large, frontal face.
  camera: () => photo("val", "jerry_seinfeld", "httpcdnssninsidercomwpcontentuploadsjerryseinfeldxjpg.jpg"),
};
/** Someone never enrolled, with one face in the picture. */
export const stranger = {
  camera: () => photo("val", "madonna", "httpcdnfuncheapcomwpcontentuploadsVOGUEjpg.jpg"),
};

/** Where the tests leave screenshots for a person to look at (outside the repository). */
export const shotsDir = process.env.FACEGATE_SHOTS_DIR ?? "/tmp/facegate-shots";
fs.mkdirSync(shotsDir, { recursive: true });

let cameraDir: string | undefined;
const cameraFiles = new Map<string, string>();

/**
 * A fake-camera video of `still`: a few 640x480 yuv420p frames in `.y4m`
 * (Chromium's fake capture refuses pictures), made once per photo in a
 * temporary folder outside the repository.
 */
export function cameraVideo(still: string): string {
  const known = cameraFiles.get(still);
  if (known) {
    return known;
  }
  if (!cameraDir) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "facegate-e2e-camera-"));
    process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
    cameraDir = dir;
  }
  const video = path.join(cameraDir, `camera-${cameraFiles.size + 1}.y4m`);
  execFileSync("ffmpeg", [
    "-loglevel", "error",
    "-y",
    "-loop", "1",
    "-i", still,
    "-vf", "scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2,format=yuv420p",
    "-frames:v", "3",
    "-f", "yuv4mpegpipe",
    video,
  ]);
  cameraFiles.set(still, video);
  return video;
}

/** Chromium flags that grant the camera and feed it `video`. */
export function cameraArgs(video: string): string[] {
  return [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    `--use-file-for-fake-video-capture=${video}`,
  ];
}

/** Waits until the WASM has hydrated the page, so that clicks reach their handlers. */
export async function hydrated(page: Page): Promise<void> {
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
}

/** Logs in through the login page and lands on the registration page. */
export async function logIn(page: Page): Promise<void> {
  await page.goto("/login");
  await hydrated(page);
  await page.getByLabel("Password").fill(adminPassword);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page).toHaveURL(/\/admin$/);
  await hydrated(page);
}

/** Logs `request` in through the JSON API; its cookie then opens the admin API. */
export async function logInApi(request: APIRequestContext): Promise<void> {
  const response = await request.post("/api/v1/session", { data: { password: adminPassword } });
  expect(response.status()).toBe(200);
}

type PersonJson = { id: string; name: string };

async function people(request: APIRequestContext): Promise<PersonJson[]> {
  await logInApi(request);
  const response = await request.get("/api/v1/people");
  expect(response.status()).toBe(200);
  return (await response.json()).people;
}

/** Deletes everyone called `name` (through the JSON API), so that a test can enrol them afresh. */
export async function forget(request: APIRequestContext, name: string): Promise<void> {
  for (const person of (await people(request)).filter((p) => p.name === name)) {
    const response = await request.delete(`/api/v1/people/${person.id}`);
    expect(response.ok(), await response.text()).toBe(true);
  }
}

/**
 * Makes sure the test person is enrolled (through the JSON API), so that a
 * test needing them does not depend on another test having run first.
 */
export async function ensureEnrolled(request: APIRequestContext): Promise<void> {
  if ((await people(request)).some((person) => person.name === enrolled.name)) {
    return;
  }
  const form = new FormData();
  form.append("name", enrolled.name);
  for (const file of trainPhotos(enrolled.folder, 4)) {
    form.append("photo", new Blob([fs.readFileSync(file)], { type: "image/jpeg" }), path.basename(file));
  }
  const response = await request.post("/api/v1/people", { multipart: form });
  expect(response.ok(), await response.text()).toBe(true);
}

type CameraFixtures = {
  /** Launches a Chromium whose camera shows `still`, and opens a page in it. */
  cameraPage: (still: string, options?: BrowserContextOptions) => Promise<Page>;
};

/**
 * The fake-capture file is a launch flag, so each camera picture needs a
 * browser of its own (pages showing the same picture share one); they are
 * all closed when the test ends.
 */
export const test = base.extend<CameraFixtures>({
  cameraPage: async ({}, use) => {
    const browsers = new Map<string, Browser>();
    await use(async (still, options) => {
      let browser = browsers.get(still);
      if (!browser) {
        browser = await chromium.launch({
          executablePath: chromiumPath,
          args: [...chromiumArgs, ...cameraArgs(cameraVideo(still))],
        });
        browsers.set(still, browser);
      }
      const context: BrowserContext = await browser.newContext({ baseURL, ...options });
      return context.newPage();
    });
    await Promise.all([...browsers.values()].map((browser) => browser.close()));
  },
});

export { expect };
