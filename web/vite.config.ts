// Builds the dashboard into web/dist, which the controller serves at /. Run from the repository root as
// `vite build web` (npm run build:web; the set-up step does the same). `vite web` (npm run dev:web) serves it
// with hot reload, passing /api and /ws on to the controller at CORRAL_CONTROLLER (default 127.0.0.1:9200).
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const controller = process.env.CORRAL_CONTROLLER ?? "http://127.0.0.1:9200";
const proxy = {
  "/api": { target: controller, ws: true },
  "/ws": { target: controller, ws: true },
};

export default defineConfig({
  base: "/",
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  // The app imports wire types and the shell's frames from ../src/protocol.
  server: { fs: { allow: [".."] }, proxy },
  preview: { proxy },
});
