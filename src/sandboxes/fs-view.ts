import { readlinkSync } from 'node:fs'
import { hostname } from 'node:os'

/**
 * The label naming where the emulator that made a container (or network) saw files from. An emulator
 * reaps another one's leftovers when that one's data dir is gone, but "gone" means something only to a
 * process that sees the same files: an emulator running in a container sees neither the host's data
 * dirs nor another container's, and the host does not see the container's. So leftovers are reaped by
 * that rule only when they carry this label with the reaper's own view.
 */
export const FS_VIEW_LABEL = 'isorun-emulator.fs-view'

/**
 * This process's view of the file system: the host name and the mount namespace (`mnt:[4026531841]`).
 * Two emulators on one host see the same files when both run on the host itself (same namespace);
 * one in a container has a namespace of its own. Without /proc (not Linux), the host name alone.
 */
export const FS_VIEW: string = (() => {
  let mnt = ''
  try {
    mnt = readlinkSync('/proc/self/ns/mnt')
  } catch {
    // not Linux: the host name stands for the view
  }
  return mnt ? `${hostname()}/${mnt}` : hostname()
})()

/** Whether a leftover's data-dir label may be checked here, for reaping: it was made in this view. */
export function sameFilesystemView(labels: Record<string, string> | undefined): boolean {
  return labels?.[FS_VIEW_LABEL] === FS_VIEW
}
