; Veraltheim for Windows: NSIS installer (makensis runs on Windows and Linux).
; packaging/windows.py passes VERSION, SRCDIR (the PyInstaller folder), OUTFILE and ICON:
;   makensis -DVERSION=0.1.0 -DSRCDIR=build\bundle\veraltheim -DOUTFILE=... -DICON=... veraltheim.nsi
; Per-user install (no administrator rights): %LOCALAPPDATA%\Programs\Veraltheim, a Start-menu
; shortcut, an uninstaller in Apps & features, and the service started at logon for this user
; (HKCU Run: the windowless veraltheim-service-bg.exe, logging to %LOCALAPPDATA%\veraltheim).
Unicode true
SetCompressor /SOLID lzma
!include "MUI2.nsh"

!define APP "Veraltheim"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APP}"
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
!define SERVICE_CMD '"$INSTDIR\veraltheim-service-bg.exe" run --log-file "$LOCALAPPDATA\veraltheim\service.log"'

Name "${APP} ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\${APP}"
InstallDirRegKey HKCU "${UNINST_KEY}" "InstallLocation"
RequestExecutionLevel user
!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_FINISHPAGE_RUN "$INSTDIR\veraltheim.exe"

!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Section "Install"
  ; an older service still running would hold its files open
  nsExec::Exec 'taskkill /F /IM veraltheim-service-bg.exe'
  SetOutPath "$INSTDIR"
  File /r "${SRCDIR}\*"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  CreateDirectory "$SMPROGRAMS\${APP}"
  CreateShortcut "$SMPROGRAMS\${APP}\${APP}.lnk" "$INSTDIR\veraltheim.exe"
  CreateShortcut "$SMPROGRAMS\${APP}\Uninstall ${APP}.lnk" "$INSTDIR\uninstall.exe"

  CreateDirectory "$LOCALAPPDATA\veraltheim"
  WriteRegStr HKCU "${RUN_KEY}" "${APP} service" '${SERVICE_CMD}'
  Exec '${SERVICE_CMD}'

  WriteRegStr HKCU "${UNINST_KEY}" "DisplayName" "${APP}"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINST_KEY}" "Publisher" "The Veraltheim developers"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\veraltheim.exe"
  WriteRegStr HKCU "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoRepair" 1
SectionEnd

Section "Uninstall"
  nsExec::Exec 'taskkill /F /IM veraltheim-service-bg.exe'
  DeleteRegValue HKCU "${RUN_KEY}" "${APP} service"
  Delete "$SMPROGRAMS\${APP}\${APP}.lnk"
  Delete "$SMPROGRAMS\${APP}\Uninstall ${APP}.lnk"
  RMDir "$SMPROGRAMS\${APP}"
  RMDir /r "$INSTDIR"
  DeleteRegKey HKCU "${UNINST_KEY}"
SectionEnd
