// The pages at phone and desktop sizes: screenshots for a person to look at
// (saved outside the repository) and the layout rules they must keep.
import * as path from "node:path";
import type { Page } from "@playwright/test";

import {
  enrolled,
  ensureEnrolled,
  expect,
  hydrated,
  logIn,
  shotsDir,
  stranger,
  test,
} from "../support/facegate";

const phone = { deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const sizes = {
  phone: { viewport: { width: 390, height: 844 }, ...phone },
  desktop: { viewport: { width: 1280, height: 800 } },
};
// The check-in kiosk is also used on a phone lying on its side.
const checkInSizes = { ...sizes, "phone-landscape": { viewport: { width: 844, height: 390 }, ...phone } };

/** What `check_in_frame` answers, as far as these tests read it. */
type FrameAnswer = {
  status: string;
  face: { x1: number; y1: number; x2: number; y2: number };
  image_width: number;
  image_height: number;
};

/** Nothing may stick out sideways: a phone would scroll horizontally. */
async function expectNoSidewaysScroll(page: Page): Promise<void> {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
}

for (const [size, options] of Object.entries(checkInSizes)) {
  test(`check-in page at ${size} size`, async ({ cameraPage, request }) => {
    await ensureEnrolled(request);
    const page = await cameraPage(enrolled.camera(), options);
    const answers: FrameAnswer[] = [];
    page.on("response", async (response) => {
      if (response.url().includes("/api/check_in_frame") && response.ok()) {
        answers.push(await response.json());
      }
    });

    await page.goto("/");
    await hydrated(page);
    await expect(page.locator("#checkin-status")).toContainText(`Welcome, ${enrolled.name}!`);
    await page.screenshot({ path: path.join(shotsDir, `checkin-${size}.png`) });

    await expectNoSidewaysScroll(page);
    const viewport = page.viewportSize()!;
    const stage = (await page.locator(".checkin .stage").boundingBox())!;
    const video = (await page.locator(".checkin video").boundingBox())!;
    const status = (await page.locator("#checkin-status").boundingBox())!;
    // The video fills its stage at the camera's own aspect ratio (no bars, no cropping)...
    expect(Math.abs(video.width - stage.width)).toBeLessThanOrEqual(1);
    expect(Math.abs(video.height - stage.height)).toBeLessThanOrEqual(1);
    expect(Math.abs(video.width / video.height - 640 / 480)).toBeLessThan(0.01);
    // ...so the face box lands where the server found the face, mirrored like the selfie picture.
    await expect(page.locator(".checkin .stage")).toHaveClass(/mirrored/);
    const recognised = [...answers].reverse().find((answer) => answer.status === "recognised")!;
    const { face, image_width: width, image_height: height } = recognised;
    const expected = {
      x: stage.x + stage.width * (1 - face.x2 / width),
      y: stage.y + stage.height * (face.y1 / height),
      width: stage.width * ((face.x2 - face.x1) / width),
      height: stage.height * ((face.y2 - face.y1) / height),
    };
    await expect
      .poll(async () => {
        const box = (await page.locator(".face-box.ok").boundingBox())!;
        return Math.max(
          Math.abs(box.x - expected.x),
          Math.abs(box.y - expected.y),
          Math.abs(box.width - expected.width),
          Math.abs(box.height - expected.height),
        );
      })
      .toBeLessThanOrEqual(2);
    // The picture and the greeting are both in view without scrolling.
    expect(video.width).toBeGreaterThanOrEqual(Math.min(viewport.width - 40, 320));
    expect(status.y + status.height).toBeLessThanOrEqual(viewport.height);
  });
}

for (const [size, options] of Object.entries(sizes)) {
  test(`registration and admin pages at ${size} size`, async ({ cameraPage }) => {
    const page = await cameraPage(stranger.camera(), options);
    await page.goto("/login");
    await hydrated(page);
    await page.screenshot({ path: path.join(shotsDir, `login-${size}.png`) });
    await expectNoSidewaysScroll(page);

    await logIn(page);
    await page.screenshot({ path: path.join(shotsDir, `register-${size}.png`), fullPage: true });
    await expectNoSidewaysScroll(page);
    const viewport = page.viewportSize()!;
    for (const control of [page.getByLabel("Name"), page.getByRole("button", { name: "Register" })]) {
      const bounds = (await control.boundingBox())!;
      expect(bounds.x).toBeGreaterThanOrEqual(0);
      expect(bounds.x + bounds.width).toBeLessThanOrEqual(viewport.width);
      // Big enough to hit with a thumb.
      expect(bounds.height).toBeGreaterThanOrEqual(40);
    }
    // Only the current page is marked in the admin navigation.
    await expect(page.locator('.admin-nav a[aria-current="page"]')).toHaveText(["Register"]);

    // Enrolling from the camera: a live face box and advice, then a captured photo.
    await page.getByRole("button", { name: "Use camera" }).click();
    const capture = page.locator(".camera-capture");
    await expect(capture).toContainText("One face: ready to capture.");
    await expect(capture.locator(".face-box.ok")).toBeVisible();
    await page.getByRole("button", { name: "Capture photo" }).click();
    await expect(capture.locator(".captures img")).toHaveCount(1);
    await page.screenshot({ path: path.join(shotsDir, `register-camera-${size}.png`), fullPage: true });
    await expectNoSidewaysScroll(page);
    const stage = (await capture.locator(".stage").boundingBox())!;
    const video = (await capture.locator("video").boundingBox())!;
    expect(Math.abs(video.height - stage.height)).toBeLessThanOrEqual(1);
    await page.getByRole("button", { name: "Stop camera" }).click();
    await expect(capture.locator(".stage")).toBeHidden();

    await page.getByRole("link", { name: "People" }).click();
    await expect(page.locator("#people, .panel p.muted").first()).toBeVisible();
    await page.screenshot({ path: path.join(shotsDir, `people-${size}.png`), fullPage: true });
    await expectNoSidewaysScroll(page);

    await page.getByRole("link", { name: "Check-in log" }).click();
    await expect(page.locator("#log, .panel p.muted").first()).toBeVisible();
    await page.screenshot({ path: path.join(shotsDir, `log-${size}.png`), fullPage: true });
    await expectNoSidewaysScroll(page);
    await expect(page.locator('.admin-nav a[aria-current="page"]')).toHaveText(["Check-in log"]);

    await page.getByRole("link", { name: "Settings" }).click();
    await expect(page.locator("dl.settings")).toContainText("1 person, 4 faces");
    await page.screenshot({ path: path.join(shotsDir, `settings-${size}.png`), fullPage: true });
    await expectNoSidewaysScroll(page);
  });
}
